"""Run every qbridge service as a local process against a local stack.

Used by ``make run`` and by the end-to-end tests, which also kill (SIGKILL) and
restart individual services mid-stream.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.errors import DevstackError

if TYPE_CHECKING:
    from devstack.stack import LocalStack

logger = logging.getLogger(__name__)

#: (service name, python module) in start order: consumers of a topic before its producers.
SERVICES: tuple[tuple[str, str], ...] = (
    ("results-sink", "results_sink"),
    ("orchestrator", "orchestrator"),
    ("classical-fallback", "classical_fallback"),
    ("quantum-executor", "quantum_executor"),
    ("intake", "intake"),
    ("gateway", "gateway"),
)


#: Explicit dev-only opt-ins every local service process gets (overridable by env):
#: the gateway serves API keys over plaintext gRPC on 127.0.0.1.
DEV_DEFAULTS: dict[str, str] = {"QBRIDGE_GRPC_ALLOW_PLAINTEXT": "true"}

_PORT_CLASH = ("Address already in use", "Failed to bind", "address already in use")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    """One service process with its own log file and metrics/health port."""

    name: str
    module: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    auto_grpc_port: bool = False
    """The gRPC port in ``env`` was picked here, so a clash may re-pick it."""

    @property
    def log_path(self) -> Path:
        """Where the service's stdout/stderr go."""
        return self.log_dir / f"{self.name}.log"

    def start(self) -> None:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        env = {**DEV_DEFAULTS, **os.environ, **self.env, "QBRIDGE_HTTP_PORT": str(self.port)}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until ``/readyz`` answers 200.

        Raises:
            DevstackError: The process died or did not become ready (with its log tail).
        """
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/readyz"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DevstackError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise DevstackError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    def start_ready(self, timeout: float = 120.0, attempts: int = 3) -> None:
        """Start and wait until ready, retrying on new ports if a port was taken meanwhile.

        Free ports are found by binding and releasing them, so another process can take
        one before the service binds it; that start fails with "address already in use".
        """
        for attempt in range(1, attempts + 1):
            self.start()
            try:
                self.wait_ready(timeout)
                return
            except DevstackError:
                clash = any(s in self.tail(60) for s in _PORT_CLASH)
                if not clash or attempt == attempts:
                    raise
                logger.warning("%s: port taken at start, retrying on new ports", self.name)
                if self.proc is not None and self.proc.poll() is None:
                    self.kill()
                self.port = free_port()
                if self.auto_grpc_port:
                    self.env["QBRIDGE_GRPC_PORT"] = str(free_port())

    def metrics(self) -> str:
        """The service's Prometheus exposition text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM for %.0fs: killing", self.name, timeout)
            return self.kill()

    def kill(self) -> int:
        """SIGKILL: no chance to finish or commit anything."""
        assert self.proc is not None
        self.proc.kill()
        return self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        """Last lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Pipeline:
    """All services, started and stopped together."""

    def __init__(
        self,
        bootstrap_servers: str,
        database_url: str,
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        per_service_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Describe the pipeline (nothing starts yet).

        Args:
            bootstrap_servers: Kafka bootstrap servers.
            database_url: PostgreSQL URL.
            log_dir: Folder for one log file per service.
            extra_env: Environment for every service.
            per_service_env: More environment by service name.
        """
        base = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "DATABASE_URL": database_url,
            "QBRIDGE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        per = per_service_env or {}
        # A free gRPC port per pipeline, so pipelines never clash on 50051.
        auto_grpc = "QBRIDGE_GRPC_PORT" not in per.get("gateway", {})
        per = {**per, "gateway": {"QBRIDGE_GRPC_PORT": str(free_port()), **per.get("gateway", {})}}
        self.services = {
            name: ServiceProcess(
                name,
                module,
                {**base, "KAFKA_GROUP_INSTANCE_ID": f"{name}-0", **per.get(name, {})},
                log_dir,
            )
            for name, module in SERVICES
        }
        self.services["gateway"].auto_grpc_port = auto_grpc

    @classmethod
    def for_stack(
        cls,
        stack: LocalStack,
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        per_service_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Pipeline:
        """Describe the pipeline on ``stack``, each service with its own credentials.

        Args:
            stack: A started local stack (locked down or not).
            log_dir: Folder for one log file per service.
            extra_env: Environment for every service.
            per_service_env: More environment by service name (wins over the stack's).

        Returns:
            The pipeline (nothing starts yet).
        """
        per = per_service_env or {}
        return cls(
            stack.bootstrap_servers,
            stack.dsn,
            log_dir,
            extra_env,
            {name: {**stack.service_env(name), **per.get(name, {})} for name, _ in SERVICES},
        )

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def start(self, timeout: float = 180.0) -> None:
        """Start every service and wait until each is ready."""
        for svc in self.services.values():
            svc.start_ready(timeout)
            logger.info("%s ready (metrics on :%d)", svc.name, svc.port)

    def restart(self, name: str, timeout: float = 120.0) -> None:
        """Start a stopped or killed service again."""
        self.services[name].start_ready(timeout)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service (reverse start order); returns exit codes."""
        return {svc.name: svc.stop() for svc in reversed(list(self.services.values()))}
