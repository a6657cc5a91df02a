"""Process plumbing shared by the services: ports, spawning, stopping, cleanup.

Lifetime guarantees for long-lived server processes started with :func:`spawn`:

* Each one gets ``PR_SET_PDEATHSIG`` (through util-linux ``setpriv``, applied
  *after* any uid switch, so it survives running as ``postgres``): when the
  Python process that started it dies -- even by SIGKILL -- the kernel signals
  the server.
* PDEATHSIG fires when the *thread* that forked the child exits, so every
  long-lived child is forked from one dedicated daemon thread that lives as
  long as the interpreter. Callers may therefore start services from any
  thread (e.g. a thread pool) without the child dying with that thread.
* Each child is the leader of its own session/process group, so a terminal
  Ctrl-C reaches only the supervisor, which then stops services in order.
* :func:`register_cleanup` adds objects to an ``atexit`` sweep.
* Work dirs carry an owner file; :func:`sweep_stale_dirs` removes dirs left
  behind by owners that were killed before they could clean up.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from devstack.errors import DevstackError

logger = logging.getLogger(__name__)

#: Prefix of every temporary work dir created by the dev stack.
WORKDIR_PREFIX = "qbridge-devstack-"
_OWNER_FILE = "owner.pid"


# --------------------------------------------------------------------------- ports


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that were free a moment ago.

    All sockets are held open together so the ports are distinct. Another
    process may still grab one before our server binds it; services detect
    that (:class:`devstack.errors.PortInUseError`) and retry on new ports.

    Args:
        count: Number of ports wanted.
        host: Interface to probe.

    Returns:
        The port numbers.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


# ------------------------------------------------------------------------ users


def user_ids(user: str) -> tuple[int, int]:
    """Return ``(uid, gid)`` of a system user.

    Args:
        user: Login name.

    Returns:
        The numeric uid and primary gid.

    Raises:
        DevstackError: If the user does not exist.
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise DevstackError(f"system user {user!r} does not exist") from exc
    return entry.pw_uid, entry.pw_gid


def chown_tree(path: Path, user: str) -> None:
    """Recursively give ``path`` to ``user`` (only meaningful as root).

    Args:
        path: File or directory.
        user: Login name of the new owner.
    """
    uid, gid = user_ids(user)
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _setpriv_prefix(run_as: str | None, pdeathsig: signal.Signals | None) -> list[str] | None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    cmd = [setpriv]
    if pdeathsig is not None:
        cmd.append(f"--pdeathsig={pdeathsig.name.removeprefix('SIG')}")
    if run_as is not None:
        cmd += [f"--reuid={run_as}", f"--regid={run_as}", "--init-groups"]
    return [*cmd, "--"]


def _prctl_pdeathsig(sig: signal.Signals) -> Callable[[], None]:
    def _set() -> None:  # runs in the child between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)

    return _set


def _command(
    args: Sequence[str], run_as: str | None, pdeathsig: signal.Signals | None
) -> tuple[list[str], dict[str, Any]]:
    """Wrap ``args`` so it runs as ``run_as`` with a parent-death signal."""
    if run_as is not None and os.geteuid() != 0:
        raise DevstackError(f"running a command as {run_as!r} needs root")
    prefix = _setpriv_prefix(run_as, pdeathsig)
    if prefix is not None:
        return prefix + list(args), {}
    # Fallback without setpriv: CPython switches uid before calling preexec_fn,
    # so the prctl below is not cleared by the credential change.
    extra: dict[str, Any] = {}
    if run_as is not None:
        uid, gid = user_ids(run_as)
        extra.update(user=uid, group=gid, extra_groups=[])
    if pdeathsig is not None:
        extra["preexec_fn"] = _prctl_pdeathsig(pdeathsig)
    return list(args), extra


# ----------------------------------------------------------------------- running


def run(
    args: Sequence[str],
    *,
    run_as: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived command to completion and fail loudly.

    Args:
        args: Command line.
        run_as: Run as this system user (requires root).
        cwd: Working directory.
        env: Full environment (default: inherit).
        timeout: Seconds before the command is killed.
        what: Human name of the step for error messages.

    Returns:
        The completed process (text output captured).

    Raises:
        DevstackError: On a non-zero exit, a timeout or a missing executable.
    """
    cmd, extra = _command(args, run_as, signal.SIGKILL)
    label = what or Path(args[0]).name
    logger.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **extra,
        )
    except FileNotFoundError as exc:
        raise DevstackError(f"{label}: executable not found: {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DevstackError(f"{label} timed out after {timeout:.0f}s: {' '.join(args)}") from exc
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
        raise DevstackError(
            f"{label} failed (exit {proc.returncode}): {' '.join(args)}\n" + "\n".join(output)
        )
    return proc


class _Spawner:
    """Forks every long-lived child from one immortal daemon thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[concurrent.futures.Future[subprocess.Popen[bytes]], list[str], dict[str, Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, cmd: list[str], kwargs: dict[str, Any]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="devstack-spawner", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((future, cmd, kwargs))
        return future.result()

    def _loop(self) -> None:
        while True:
            future, cmd, kwargs = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(subprocess.Popen(cmd, **kwargs))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)


_SPAWNER = _Spawner()


def spawn(
    args: Sequence[str],
    *,
    log_file: Path,
    run_as: str | None = None,
    pdeathsig: signal.Signals = signal.SIGTERM,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-lived server process tied to this Python process.

    Args:
        args: Command line.
        log_file: stdout and stderr are appended here.
        run_as: Run as this system user (requires root).
        pdeathsig: Signal the kernel sends the child if this process dies.
        cwd: Working directory.
        env: Full environment (default: inherit).

    Returns:
        The running process; it leads its own process group.

    Raises:
        DevstackError: If the executable is missing.
    """
    cmd, extra = _command(args, run_as, pdeathsig)
    logger.debug("spawning %s", " ".join(cmd))
    with open(log_file, "ab") as out:
        kwargs: dict[str, Any] = {
            "cwd": cwd,
            "env": dict(env) if env is not None else None,
            "stdin": subprocess.DEVNULL,
            "stdout": out,
            "stderr": subprocess.STDOUT,
            "start_new_session": True,
            **extra,
        }
        try:
            return _SPAWNER.popen(cmd, kwargs)
        except FileNotFoundError as exc:
            raise DevstackError(f"executable not found: {args[0]}") from exc


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process(
    proc: subprocess.Popen[bytes],
    *,
    name: str,
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = 30.0,
) -> int | None:
    """Stop a process started by :func:`spawn`: ``sig``, wait, then SIGKILL.

    ``sig`` goes to the process only (servers signal their own children);
    SIGKILL goes to its whole process group.

    Args:
        proc: The process.
        name: Human name for logs.
        sig: Polite stop signal (SIGKILL for a crash-like stop).
        timeout: Seconds to wait after the polite signal.

    Returns:
        The exit code (None if the process could not be reaped).
    """
    if proc.poll() is None:
        logger.debug("sending %s to %s (pid %d)", sig.name, name, proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s (pid %d) ignored %s for %.0fs; killing", name, proc.pid, sig.name, timeout
            )
    _signal_group(proc, signal.SIGKILL)  # leftovers of the group, if any
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        logger.error("%s (pid %d) survived SIGKILL", name, proc.pid)
        return None


def pid_alive(pid: int) -> bool:
    """Tell whether ``pid`` is a live (non-zombie) process.

    Args:
        pid: Process id.

    Returns:
        True if the process exists and has not exited.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def wait_pid_gone(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` is gone (or a zombie).

    Args:
        pid: Process id.
        timeout: Seconds to wait.

    Returns:
        True if the process is gone.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


# ---------------------------------------------------------------------- logs


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file ('' if missing).

    Args:
        path: File to read.
        lines: Number of lines.

    Returns:
        The lines joined with newlines.
    """
    try:
        with open(path, errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip()
    except FileNotFoundError:
        return ""


# ----------------------------------------------------------------- work dirs


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def make_workdir(kind: str, base: Path | None = None) -> Path:
    """Create a private temp dir stamped with this process as its owner.

    Args:
        kind: Short service name (``kafka``, ``pg``).
        base: Parent directory (default: the system temp dir).

    Returns:
        The new directory.
    """
    sweep_stale_dirs(base)
    path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{kind}-", dir=base))
    pid = os.getpid()
    (path / _OWNER_FILE).write_text(f"{pid} {_proc_start_time(pid)}\n")
    return path


def sweep_stale_dirs(base: Path | None = None) -> None:
    """Remove work dirs whose owner process no longer exists.

    Args:
        base: Directory to scan (default: the system temp dir).
    """
    root = Path(base) if base is not None else Path(tempfile.gettempdir())
    for path in root.glob(f"{WORKDIR_PREFIX}*"):
        try:
            pid_s, start = (path / _OWNER_FILE).read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            continue
        if pid_alive(pid) and _proc_start_time(pid) == start:
            continue
        logger.info("removing stale work dir %s (owner pid %d is gone)", path, pid)
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------- atexit


class Stoppable(Protocol):
    """Anything with a best-effort ``stop()``."""

    def stop(self) -> None:
        """Stop and clean up."""


_live: dict[int, Stoppable] = {}
_live_lock = threading.Lock()


def register_cleanup(obj: Stoppable) -> None:
    """Stop ``obj`` at interpreter exit unless it was stopped before.

    Args:
        obj: The service.
    """
    with _live_lock:
        _live[id(obj)] = obj


def unregister_cleanup(obj: Stoppable) -> None:
    """Undo :func:`register_cleanup`.

    Args:
        obj: The service.
    """
    with _live_lock:
        _live.pop(id(obj), None)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        objs = list(_live.values())
    for obj in objs:
        try:
            obj.stop()
        except Exception:  # best effort at exit
            logger.exception("atexit cleanup of %r failed", obj)
