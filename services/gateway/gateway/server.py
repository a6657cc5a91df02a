"""The gateway process's parts, started and stopped together.

:class:`GatewayServer` owns the gRPC server (the Gateway service, standard health
checking and reflection, TLS when configured), the Kafka producer and event follower,
the lag monitor, the local solver pool and the results-store pool.
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.admission import Admission, LagMonitor
from gateway.auth import Authenticator
from gateway.config import GatewaySettings
from gateway.events import EventHub
from gateway.jobs import JobFactory, JobPublisher
from gateway.local import LocalSolverPool
from gateway.service import GatewayService
from gateway.solve import DeadlinePolicy, SolveCoordinator
from gateway.store import JobReader
from gateway.tracking import JobTracker
from intake.accept import RequestBounds
from qbridge.bus import BusProducer, ensure_topics
from qbridge.contracts import AvroCodec, default_registry
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

SERVICE = "gateway"
GATEWAY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gateway"].full_name


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files, or None for plaintext."""
    if not settings.tls_cert or not settings.tls_key:
        return None
    key = Path(settings.tls_key).read_bytes()
    cert = Path(settings.tls_cert).read_bytes()
    ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def make_grpc_server(
    settings: GatewaySettings,
    servicer: pb_grpc.GatewayServicer,
    health_servicer: health.HealthServicer,
) -> tuple[grpc.Server, int]:
    """A bound (not started) gRPC server with the Gateway, health and reflection services.

    Raises:
        OSError: The address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="grpc"),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    pb_grpc.add_GatewayServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (GATEWAY_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    creds = server_credentials(settings)
    port = (
        server.add_secure_port(address, creds)
        if creds is not None
        else server.add_insecure_port(address)
    )
    if port == 0:
        raise OSError(f"cannot bind the gRPC server to {address}")
    return server, port


class GatewayServer:
    """Everything one gateway instance runs."""

    def __init__(self, settings: GatewaySettings, *, codec: AvroCodec | None = None) -> None:
        """Build the parts (nothing connects before :meth:`start`).

        Raises:
            ValueError: Invalid API key configuration.
        """
        self.settings = settings
        self.codec = codec or AvroCodec(default_registry())
        self.auth = Authenticator(settings.api_keys)
        if not self.auth.configured:
            logger.warning("no API keys configured (QBRIDGE_API_KEYS): every call is refused")
        self.producer = BusProducer(settings.kafka, self.codec, client_id="qbridge-gateway")
        self.hub = EventHub(settings.kafka, self.codec, recent_jobs=settings.recent_jobs)
        self.lag = LagMonitor(settings.kafka, poll_s=settings.lag_poll_ms / 1000)
        self.reader = JobReader.connect(
            settings.database_url, max_size=settings.db_pool_max, timeout_s=settings.db_timeout_s
        )
        self.pool = LocalSolverPool(
            workers=settings.local_workers,
            queue_limit=settings.local_queue_limit,
            max_budget_s=settings.local_max_budget_ms / 1000,
            mode=settings.local_mode,
        )
        self.admission = Admission(
            max_inflight=settings.max_inflight_solves,
            tenant_max_inflight=settings.tenant_max_inflight,
            low_priority_below=settings.low_priority_below,
            reject_low_priority_lag=settings.reject_low_priority_lag,
            reject_submit_lag=settings.reject_submit_lag,
            lag=self.lag.total,
        )
        jobs = JobFactory(
            settings.limits(),
            RequestBounds(min_timeout_ms=settings.min_job_timeout_ms),
            known_backends=settings.known_backends,
            premium_backends=settings.premium_backends,
            premium_tenants=settings.premium_tenants,
        )
        publisher = JobPublisher(self.producer)
        policy = DeadlinePolicy(
            default_ms=settings.default_deadline_ms,
            max_ms=settings.max_deadline_ms,
            answer_reserve_ms=settings.answer_reserve_ms,
            pipeline_reserve_share=settings.pipeline_reserve_share,
            pipeline_reserve_min_ms=settings.pipeline_reserve_min_ms,
            pipeline_reserve_max_ms=settings.pipeline_reserve_max_ms,
            min_job_timeout_ms=settings.min_job_timeout_ms,
        )
        self.service = GatewayService(
            self.auth,
            jobs,
            publisher,
            self.hub,
            SolveCoordinator(
                jobs, publisher, self.hub, self.pool, self.admission, policy, self.reader
            ),
            JobTracker(
                self.reader,
                self.hub,
                max_watchers=settings.max_watchers,
                unknown_timeout_s=settings.watch_unknown_timeout_s,
            ),
            self.admission,
            default_timeout_ms=settings.default_timeout_ms,
        )
        self.health = health.HealthServicer()
        self.grpc: grpc.Server | None = None
        self.port = 0
        self._stop = threading.Event()
        self._serving = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> int:
        """Create topics if allowed, start following events, serve gRPC; returns the port."""
        s = self.settings
        if s.create_topics:
            ensure_topics(s.kafka)
        # An I/O-bound server: hand the GIL over sooner than the 5 ms default (latency).
        sys.setswitchinterval(0.001)
        took = self.pool.wait_ready()
        logger.info("local solvers (%s) warmed up in %.2f s", self.pool.mode, took)
        self.hub.start()
        self.lag.start()
        server, self.port = make_grpc_server(s, self.service, self.health)
        server.start()
        self.grpc = server
        self._serving = True
        self._set_health(True)
        threading.Thread(target=self._health_loop, name="health", daemon=True).start()
        mode = "plaintext"
        if s.tls_cert:
            mode = "TLS with client certificates" if s.tls_client_ca else "TLS"
        logger.info("gRPC gateway on %s:%d (%s)", s.grpc_host, self.port, mode)
        return self.port

    def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", GATEWAY_SERVICE_NAME):
            self.health.set(name, status)

    def _health_loop(self) -> None:
        last = True
        while not self._stop.wait(2.0):
            ok, detail = self.ready()
            if ok != last:
                logger.warning("health: %s", "serving" if ok else f"not serving ({detail})")
                self._set_health(ok)
                last = ok

    def ready(self) -> tuple[bool, str]:
        """Ready while serving and following events."""
        if not self._serving:
            return False, "not serving"
        ok, detail = self.hub.healthy()
        if not ok:
            return False, detail
        lag = self.lag.total()
        return True, (
            f"port={self.port} inflight={self.admission.inflight} "
            f"watchers={self.hub.subscribers} executor_lag={lag if lag is not None else '?'}"
        )

    def run(self) -> None:
        """Start and serve until :meth:`request_stop` (for ``ServiceRuntime.serve``)."""
        self.start()
        self._stop.wait()
        self.shutdown()

    def request_stop(self) -> None:
        """Ask :meth:`run` to shut down (signal-safe)."""
        self._stop.set()

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING), let in-flight ones finish, stop."""
        self._stop.set()
        if self.grpc is not None and self._serving:
            self._serving = False
            self.health.enter_graceful_shutdown()
            grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
            self.grpc.stop(grace).wait(grace + 1)
        self.hub.stop()
        self.lag.stop()

    def close(self) -> None:
        """Release clients (after :meth:`shutdown`)."""
        self.pool.close()
        self.producer.close()
        self.reader.close()
