"""A gRPC server as qbridge runs one.

Bounded threads, a bounded receive size, interceptors (the gateway authenticates and
rate-limits there, before a request is parsed), TLS or mTLS when configured, standard
health checking, and reflection when enabled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qbridge.errors import ConfigurationError

logger = logging.getLogger(__name__)

_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


class GrpcServerSettings(BaseSettings):
    """How a gRPC server listens (environment prefix ``QBRIDGE_``).

    Attributes:
        grpc_host: Bind address of the gRPC server.
        grpc_port: gRPC port (0 picks a free one).
        grpc_workers: Threads serving calls (a streaming call holds one while it lasts).
        max_concurrent_rpcs: gRPC answers RESOURCE_EXHAUSTED above this many calls; keep it
            at most ``grpc_workers`` so excess calls are refused at once instead of queueing
            (a queued call would lose its deadline).
        tls_cert: PEM certificate chain file; with ``tls_key`` the server speaks TLS only.
        tls_key: PEM private key file.
        tls_client_ca: PEM CA bundle; when set, clients must present a certificate (mTLS).
        grpc_allow_plaintext: Explicit opt-in to serve credentials-bearing calls (API
            keys) without TLS (``QBRIDGE_GRPC_ALLOW_PLAINTEXT=true``; dev stacks only).
        grpc_max_receive_bytes: Largest request message accepted; gRPC refuses a larger one
            with RESOURCE_EXHAUSTED from its length prefix, before any of it is buffered
            or parsed.
        grpc_reflection: Serve the reflection service (lets anyone list and describe the
            API without a key: convenient in development, off by default).
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore")

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    grpc_workers: int = Field(default=160, ge=4)
    max_concurrent_rpcs: int = Field(default=160, ge=1)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    grpc_allow_plaintext: bool = False
    grpc_max_receive_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    grpc_reflection: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> GrpcServerSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("QBRIDGE_TLS_CERT and QBRIDGE_TLS_KEY must be set together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("QBRIDGE_TLS_CLIENT_CA needs QBRIDGE_TLS_CERT and QBRIDGE_TLS_KEY")
        return self

    @property
    def transport(self) -> str:
        """``plaintext``, ``TLS`` or ``TLS with client certificates`` (for logs)."""
        if not self.tls_cert:
            return "plaintext"
        return "TLS with client certificates" if self.tls_client_ca else "TLS"


def require_transport_security(settings: GrpcServerSettings, *, authenticated: bool) -> None:
    """Refuse to serve API keys in clear text unless plaintext was opted into.

    Args:
        settings: The listener settings.
        authenticated: Whether callers send secrets (API keys) on this server.

    Raises:
        ConfigurationError: Authenticated, no TLS files, and no explicit opt-in.
    """
    if not authenticated or settings.tls_cert:
        return
    if not settings.grpc_allow_plaintext:
        raise ConfigurationError(
            "API keys are configured but gRPC has no TLS: set QBRIDGE_TLS_CERT and "
            "QBRIDGE_TLS_KEY, or QBRIDGE_GRPC_ALLOW_PLAINTEXT=true for a local dev stack"
        )
    logger.warning("serving API keys over plaintext gRPC (QBRIDGE_GRPC_ALLOW_PLAINTEXT=true)")


def server_credentials(
    tls_cert: str | None, tls_key: str | None, tls_client_ca: str | None = None
) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM files, or None for plaintext.

    Args:
        tls_cert: Certificate chain file.
        tls_key: Private key file.
        tls_client_ca: CA bundle; when given, clients must present a certificate (mTLS).
    """
    if not tls_cert or not tls_key:
        return None
    key = Path(tls_key).read_bytes()
    cert = Path(tls_cert).read_bytes()
    ca = Path(tls_client_ca).read_bytes() if tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def bound_server(
    settings: GrpcServerSettings,
    add_services: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    health_servicer: health.HealthServicer,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int]:
    """A bound (not started) gRPC server with health checking (and reflection if enabled).

    Args:
        settings: Address, threads, call and size limits, reflection and TLS files.
        add_services: Registers the application's servicers on the server.
        service_names: Full names of those services (listed by reflection).
        health_servicer: The ``grpc.health.v1.Health`` implementation to serve.
        interceptors: Run on every call in order, before its request is read.

    Returns:
        The server and the bound port.

    Raises:
        OSError: The address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="grpc"),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        interceptors=list(interceptors),
        options=[
            *_OPTIONS,
            ("grpc.max_receive_message_length", settings.grpc_max_receive_bytes),
        ],
    )
    add_services(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.grpc_reflection:
        reflection.enable_server_reflection(
            (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    credentials = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    port = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    if port == 0:
        raise OSError(f"cannot bind the gRPC server to {address}")
    return server, port


def set_serving(
    health_servicer: health.HealthServicer, service_names: Sequence[str], serving: bool
) -> None:
    """Report SERVING or NOT_SERVING for the server (``""``) and each of ``service_names``."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *service_names):
        health_servicer.set(name, status)


def follow_readiness(
    health_servicer: health.HealthServicer,
    service_names: Sequence[str],
    ready: Callable[[], tuple[bool, str]],
    stop: threading.Event,
    interval_s: float = 2.0,
) -> threading.Thread:
    """Report SERVING now, then follow ``ready()`` every ``interval_s`` until ``stop`` is set.

    Returns:
        The (started, daemon) thread doing it.
    """
    set_serving(health_servicer, service_names, True)

    def _loop() -> None:
        last = True
        while not stop.wait(interval_s):
            ok, detail = ready()
            if ok != last:
                logger.warning("health: %s", "serving" if ok else f"not serving ({detail})")
                set_serving(health_servicer, service_names, ok)
                last = ok

    thread = threading.Thread(target=_loop, name="health", daemon=True)
    thread.start()
    return thread
