"""Common lifecycle of a local server process (start / stop / restart)."""

from __future__ import annotations

import abc
import logging
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from devstack import procs
from devstack.errors import DevstackError, PortInUseError

logger = logging.getLogger(__name__)

#: Default seconds allowed for a start (JVM start on a loaded 2-core box is slow).
DEFAULT_START_TIMEOUT = 90.0
_PORT_ATTEMPTS = 3


class LocalService(abc.ABC):
    """A server run as a child process in a private temp dir.

    Subclasses implement the service-specific steps; this class owns the
    work dir, the retry-on-port-race loop, stop/restart and cleanup.

    Attributes:
        start_timeout: Default seconds allowed for :meth:`start`.
        last_start_seconds: Wall time of the most recent successful start.
    """

    #: Short name used in logs and work dir names.
    kind: str = "service"
    #: Signal for a graceful stop.
    stop_signal: signal.Signals = signal.SIGTERM
    #: Seconds to wait for a graceful stop before SIGKILL.
    stop_timeout: float = 30.0

    def __init__(self, *, start_timeout: float, base_dir: Path | None) -> None:
        self.start_timeout = start_timeout
        self.last_start_seconds: float | None = None
        self._base_dir = base_dir
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports_locked = False
        self._lock = threading.RLock()

    # ----------------------------------------------------------- subclass hooks

    @abc.abstractmethod
    def _choose_ports(self, retry: bool) -> None:
        """Pick ports for the next launch (``retry``: the last ones were taken)."""

    @abc.abstractmethod
    def _prepare(self, workdir: Path) -> None:
        """Write config and initialise storage (only once for storage)."""

    @abc.abstractmethod
    def _launch(self, workdir: Path) -> subprocess.Popen[bytes]:
        """Start the server process."""

    @abc.abstractmethod
    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Block until the server answers; raise on death or timeout."""

    def _after_ready(self) -> None:  # noqa: B027 - optional hook
        """Run once the server answers (e.g. create a database)."""

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """Main log file of the server."""

    # ---------------------------------------------------------------- state

    @property
    def workdir(self) -> Path:
        """Private temp dir holding config, data and logs.

        Raises:
            DevstackError: Before the first :meth:`start`.
        """
        if self._workdir is None:
            raise DevstackError(f"{self.kind} has not been started")
        return self._workdir

    @property
    def pid(self) -> int | None:
        """PID of the server process, or None when it is not running."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def tail_log(self, lines: int = 40) -> str:
        """Return the last lines of the server log.

        Args:
            lines: Number of lines.

        Returns:
            The text ('' before the first start).
        """
        if self._workdir is None:
            return ""
        return procs.tail(self.log_path, lines)

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout: float | None = None) -> Self:
        """Start the server (reusing its data if it ran before) and wait until ready.

        Args:
            timeout: Seconds allowed (default: ``start_timeout``).

        Returns:
            self, for chaining.

        Raises:
            DevstackError: If it does not become ready in time or dies.
        """
        with self._lock:
            if self.is_running:
                return self
            first_start = self._workdir is None
            started = time.monotonic()
            deadline = started + (timeout if timeout is not None else self.start_timeout)
            if self._workdir is None:
                self._workdir = procs.make_workdir(self.kind, self._base_dir)
                procs.register_cleanup(self)
            try:
                self._start_with_retries(self._workdir, deadline)
                self._after_ready()
            except BaseException:
                if first_start:
                    self.stop()
                else:
                    self.stop_process(kill=True)
                raise
            self._ports_locked = True
            self.last_start_seconds = time.monotonic() - started
            logger.info("%s ready in %.1fs (pid %s)", self, self.last_start_seconds, self.pid)
            return self

    def _start_with_retries(self, workdir: Path, deadline: float) -> None:
        attempts = 1 if self._ports_locked else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self._choose_ports(retry=attempt > 1)
            self._prepare(workdir)
            self._proc = self._launch(workdir)
            try:
                self._wait_ready(self._proc, deadline)
                return
            except PortInUseError:
                procs.stop_process(self._proc, name=self.kind, sig=signal.SIGKILL, timeout=5)
                if attempt == attempts:
                    raise
                logger.warning("%s lost a port race; retrying on new ports", self.kind)

    def stop_process(self, *, kill: bool = False) -> None:
        """Stop the server process but keep its data (for outage tests).

        Args:
            kill: SIGKILL instead of a graceful stop (simulates a crash).
        """
        with self._lock:
            if self._proc is None:
                return
            sig = signal.SIGKILL if kill else self.stop_signal
            code = procs.stop_process(
                self._proc, name=self.kind, sig=sig, timeout=self.stop_timeout
            )
            logger.info("%s stopped (%s, exit %s)", self.kind, sig.name, code)
            self._proc = None

    def stop_keep_data(self) -> None:
        """Gracefully stop the server process, keeping its data dir."""
        self.stop_process()

    def restart(self, timeout: float | None = None, *, kill: bool = False) -> Self:
        """Stop the process (keeping data) and start it again on the same ports.

        Args:
            timeout: Seconds allowed for the start.
            kill: Crash it with SIGKILL instead of stopping gracefully.

        Returns:
            self.
        """
        self.stop_process(kill=kill)
        return self.start(timeout)

    def stop(self) -> None:
        """Stop the server and delete its work dir (data included). Idempotent."""
        with self._lock:
            self.stop_process()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            self._ports_locked = False
            procs.unregister_cleanup(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers

    def _failure(self, message: str, *extra_logs: Path) -> DevstackError:
        parts = [f"{self.kind}: {message}"]
        for path in (self.log_path, *extra_logs):
            text = procs.tail(path, 40)
            if text:
                parts.append(f"--- last lines of {path} ---\n{text}")
        return DevstackError("\n".join(parts))
