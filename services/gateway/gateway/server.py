"""The gateway process's parts, started and stopped together.

:class:`GatewayServer` owns the gRPC server (the Gateway service, standard health
checking and reflection, TLS when configured), the Kafka producer and event follower,
the lag monitor, the local solver pool and the results-store pool.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import replace

import grpc
from grpc_health.v1 import health

from gateway.admission import EXECUTOR_GROUPS, Admission
from gateway.approvals import ApprovalDesk
from gateway.config import GatewaySettings
from gateway.guard import GATEWAY_SERVICE_NAME, gateway_guard
from gateway.jobs import JobFactory, JobPublisher
from gateway.service import GatewayService
from gateway.solve import DeadlinePolicy, SolveCoordinator
from gateway.tracking import JobTracker
from qbridge.bus import BusProducer, ensure_topics
from qbridge.bus.follower import EventHub
from qbridge.bus.lag_monitor import LagMonitor
from qbridge.contracts import AvroCodec, default_registry
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qbridge.metrics import CONSUMER_LAG
from qbridge.results.read import JobReader
from qbridge.samples import sample_mix
from qbridge.service.auth import Authenticator
from qbridge.service.grpc_server import (
    bound_server,
    follow_readiness,
    require_transport_security,
)
from qbridge.service.guard import CallGuard
from qbridge.service.lifecycle import freeze_startup_heap
from qbridge.solvers.pool import LocalSolverPool

logger = logging.getLogger(__name__)

SERVICE = "gateway"


def make_grpc_server(
    settings: GatewaySettings,
    servicer: pb_grpc.GatewayServicer,
    health_servicer: health.HealthServicer,
    guard: CallGuard | None = None,
) -> tuple[grpc.Server, int]:
    """A bound (not started) gRPC server with the Gateway, health (and reflection) services.

    Raises:
        OSError: The address cannot be bound.
    """
    return bound_server(
        settings,
        lambda server: pb_grpc.add_GatewayServicer_to_server(servicer, server),
        [GATEWAY_SERVICE_NAME],
        health_servicer,
        interceptors=[guard] if guard is not None else [],
    )


class GatewayServer:
    """Everything one gateway instance runs."""

    def __init__(self, settings: GatewaySettings, *, codec: AvroCodec | None = None) -> None:
        """Build the parts (nothing connects before :meth:`start`).

        Raises:
            ValueError: Invalid API key configuration.
        """
        self.settings = settings
        self.codec = codec or AvroCodec(default_registry())
        self.auth = Authenticator(settings.api_keys, settings.api_key_roles)
        if not self.auth.configured:
            logger.warning("no API keys configured (QBRIDGE_API_KEYS): every call is refused")
        self.producer = BusProducer(settings.kafka, self.codec, client_id="qbridge-gateway")
        self.hub = EventHub(settings.kafka, self.codec, recent_jobs=settings.recent_jobs)
        self.lag = LagMonitor(settings.kafka, EXECUTOR_GROUPS, gauge=CONSUMER_LAG)
        self.reader = JobReader.connect(
            settings.database_url, max_size=settings.db_pool_max, timeout_s=settings.db_timeout_s
        )
        self.pool = LocalSolverPool(
            workers=settings.local_workers,
            queue_limit=settings.local_queue_limit,
            max_budget_s=settings.local_max_budget_ms / 1000,
            mode=settings.local_mode,
            warm_up_problems=[problem for _label, problem, _over in sample_mix(seed=1)],
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
            replace(settings.bounds(), min_timeout_ms=settings.min_job_timeout_ms),
            known_backends=settings.known_backends,
            premium_backends=settings.premium_backends,
            premium_tenants=settings.premium_tenants,
            codec=self.codec,
            max_request_bytes=settings.max_request_bytes,
        )
        publisher = JobPublisher(self.producer)
        policy = DeadlinePolicy(
            default_ms=settings.default_deadline_ms,
            max_ms=settings.max_deadline_ms,
            answer_reserve_ms=settings.answer_reserve_ms,
            answer_reserve_max_share=settings.answer_reserve_max_share,
            answer_reserve_start_ms=settings.answer_reserve_start_ms,
            pipeline_reserve_share=settings.pipeline_reserve_share,
            pipeline_reserve_min_ms=settings.pipeline_reserve_min_ms,
            pipeline_reserve_max_ms=settings.pipeline_reserve_max_ms,
            min_job_timeout_ms=settings.min_job_timeout_ms,
        )
        tracker = JobTracker(
            self.reader,
            self.hub,
            max_watchers=settings.max_watchers,
            tenant_max_watchers=settings.tenant_max_watchers,
            unknown_timeout_s=settings.watch_unknown_timeout_s,
        )
        self.service = GatewayService(
            self.auth,
            jobs,
            publisher,
            self.hub,
            SolveCoordinator(
                jobs, publisher, self.hub, self.pool, self.admission, policy, self.reader
            ),
            tracker,
            self.admission,
            default_timeout_ms=settings.default_timeout_ms,
            approvals=ApprovalDesk(tracker, self.producer),
        )
        self.guard = gateway_guard(settings, self.auth)
        self.health = health.HealthServicer()
        self.grpc: grpc.Server | None = None
        self.port = 0
        self._stop = threading.Event()
        self._serving = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> int:
        """Create topics if allowed, start following events, serve gRPC; returns the port."""
        s = self.settings
        require_transport_security(s, authenticated=bool(s.api_keys))
        if s.create_topics:
            ensure_topics(s.kafka)
        # An I/O-bound server: hand the GIL over sooner than the 5 ms default (latency).
        sys.setswitchinterval(0.001)
        took = self.pool.wait_ready()
        logger.info("local solvers (%s) warmed up in %.2f s", self.pool.mode, took)
        freeze_startup_heap()  # again: the warm-up (thread mode) and clients allocated more
        self.hub.start()
        self.lag.start(s.lag_poll_ms / 1000)
        server, self.port = make_grpc_server(s, self.service, self.health, self.guard)
        server.start()
        self.grpc = server
        self._serving = True
        follow_readiness(self.health, [GATEWAY_SERVICE_NAME], self.ready, self._stop)
        logger.info("gRPC gateway on %s:%d (%s)", s.grpc_host, self.port, s.transport)
        return self.port

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
            f"solve_limit={self.guard.gate.limit if self.guard.gate else '-'} "
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
        self.lag.close()

    def close(self) -> None:
        """Release clients (after :meth:`shutdown`)."""
        self.pool.close()
        self.producer.close()
        self.reader.close()
