"""``python -m devstack {fetch,up,down,status}`` (run with ``PYTHONPATH=tools``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack import paths, procs
from devstack.errors import DevstackError
from devstack.kafka import KAFKA_VERSION, KafkaBroker, ensure_jars
from devstack.postgres import PostgresServer, ensure_postgres_installed
from devstack.service import DEFAULT_START_TIMEOUT
from devstack.stack import LocalStack

logger = logging.getLogger(__name__)

SUPERVISOR_PID_KEY = "DEVSTACK_PID"
_CHILD_PIDS = ("KAFKA_PID", "POSTGRES_PID")


# ------------------------------------------------------------------ env file


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file written by ``devstack up``.

    Args:
        path: The env file.

    Returns:
        The entries ({} if the file does not exist).
    """
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            entries[key.strip()] = value.strip()
    return entries


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    body = "# written by `python -m devstack up`; removed by `down`\n"
    tmp.write_text(body + "".join(f"{k}={v}\n" for k, v in env.items()))
    tmp.replace(path)


def _supervisor_alive(env: dict[str, str]) -> int | None:
    """Return the PID of a live ``devstack up`` recorded in ``env``."""
    try:
        pid = int(env.get(SUPERVISOR_PID_KEY, ""))
    except ValueError:
        return None
    if not procs.pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"devstack" in cmdline else None


# --------------------------------------------------------------------- commands


def cmd_fetch(args: argparse.Namespace) -> int:
    """Pre-fetch the Kafka jars and install PostgreSQL if missing."""
    t0 = time.monotonic()
    lib = ensure_jars()
    t1 = time.monotonic()
    bindir = ensure_postgres_installed()
    t2 = time.monotonic()
    print(f"kafka {KAFKA_VERSION} jars: {lib} ({t1 - t0:.1f}s)")
    print(f"postgresql binaries: {bindir} ({t2 - t1:.1f}s)")
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def cmd_up(args: argparse.Namespace) -> int:
    """Start Kafka + PostgreSQL and hold them until SIGINT/SIGTERM."""
    env_file: Path = args.env_file
    running = _supervisor_alive(read_env_file(env_file))
    if running is not None:
        print(f"devstack already running (pid {running}); see {env_file}")
        return 0 if args.detach else 1
    if args.detach:
        return _up_detached(args)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    stack = LocalStack(
        kafka=KafkaBroker(port=args.kafka_port),
        postgres=PostgresServer(port=args.pg_port),
        start_timeout=args.timeout,
    )
    code = 0
    try:
        stack.start()
        env = {SUPERVISOR_PID_KEY: str(os.getpid()), **stack.env()}
        _write_env_file(env_file, env)
        print("".join(f"{k}={v}\n" for k, v in env.items()), end="", flush=True)
        print(
            f"devstack up in {stack.timings['total']:.1f}s "
            f"(kafka {stack.timings['kafka']:.1f}s, postgres {stack.timings['postgres']:.1f}s); "
            f"env in {env_file}; Ctrl-C or `python -m devstack down` to stop",
            flush=True,
        )
        while True:
            time.sleep(1.0)
            dead = [s for s in stack.services if not s.is_running]
            if dead:
                for service in dead:
                    logger.error(
                        "%s died unexpectedly; last log lines:\n%s",
                        service.kind,
                        service.tail_log(30),
                    )
                code = 1
                break
    except KeyboardInterrupt as exc:
        logger.info("received %s; stopping", exc.args[0] if exc.args else "SIGINT")
    except DevstackError as exc:
        logger.error("%s", exc)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        if read_env_file(env_file).get(SUPERVISOR_PID_KEY) == str(os.getpid()):
            env_file.unlink(missing_ok=True)
        logger.info("devstack stopped")
    return code


def _up_detached(args: argparse.Namespace) -> int:
    env_file: Path = args.env_file
    env_file.unlink(missing_ok=True)  # stale: its supervisor is gone
    log_path = env_file.with_suffix(".log")
    tools_dir = str(Path(__file__).resolve().parents[1])
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (tools_dir, child_env.get("PYTHONPATH")) if p
    )
    cmd = [sys.executable, "-m", "devstack", "up", "--env-file", str(env_file)]
    cmd += ["--timeout", str(args.timeout)]
    cmd += ["--kafka-port", str(args.kafka_port), "--pg-port", str(args.pg_port)]
    if args.verbose:
        cmd.append("--verbose")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    deadline = time.monotonic() + args.timeout + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(
                f"devstack up failed (exit {proc.returncode}); last lines of {log_path}:",
                file=sys.stderr,
            )
            print(procs.tail(log_path, 40), file=sys.stderr)
            return 1
        env = read_env_file(env_file)
        if env.get(SUPERVISOR_PID_KEY) == str(proc.pid):
            print("".join(f"{k}={v}\n" for k, v in env.items()), end="")
            print(f"devstack running in the background (pid {proc.pid}, log {log_path})")
            print("stop it with: python -m devstack down")
            return 0
        time.sleep(0.2)
    proc.terminate()
    print(f"devstack up timed out; see {log_path}", file=sys.stderr)
    return 1


def cmd_down(args: argparse.Namespace) -> int:
    """Stop a stack started by ``up`` (detached or not) using its env file."""
    env_file: Path = args.env_file
    env = read_env_file(env_file)
    if not env:
        print(f"devstack not running (no {env_file})")
        return 0
    pid = _supervisor_alive(env)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not procs.wait_pid_gone(pid, args.timeout):
            logger.warning(
                "devstack supervisor %d did not stop in %.0fs; killing it", pid, args.timeout
            )
            os.kill(pid, signal.SIGKILL)
    for key in _CHILD_PIDS:  # normally gone already (stopped, or PDEATHSIG)
        try:
            child = int(env.get(key, ""))
        except ValueError:
            continue
        if not procs.wait_pid_gone(child, 15):
            logger.warning("%s %d still alive; killing its process group", key, child)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)
    env_file.unlink(missing_ok=True)
    print("devstack stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print the env file and whether its processes are alive (exit 1 if down)."""
    env_file: Path = args.env_file
    env = read_env_file(env_file)
    pid = _supervisor_alive(env)
    if pid is None:
        print("devstack not running")
        return 1
    for key, value in env.items():
        alive = ""
        if key.endswith("_PID") and value.isdigit():
            alive = " (alive)" if procs.pid_alive(int(value)) else " (DEAD)"
        print(f"{key}={value}{alive}")
    return 0


# ------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m devstack``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description="Local Kafka (KRaft) + PostgreSQL."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="env file written by `up`, read by `down`/`status` "
        "(default $QBRIDGE_DEVSTACK_ENV or <repo>/.cache/devstack.env)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "fetch", help="pre-fetch Kafka jars and install PostgreSQL if missing"
    ).set_defaults(func=cmd_fetch)
    up = sub.add_parser("up", help="start Kafka + PostgreSQL (foreground unless --detach)")
    up.add_argument(
        "--detach", "-d", action="store_true", help="run in the background; stop with `down`"
    )
    up.add_argument(
        "--kafka-port", type=int, default=0, help="Kafka client port (default: a free one)"
    )
    up.add_argument("--pg-port", type=int, default=0, help="PostgreSQL port (default: a free one)")
    up.add_argument(
        "--timeout", type=float, default=DEFAULT_START_TIMEOUT, help="start-up timeout in seconds"
    )
    up.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    up.add_argument("--env-file", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop the stack recorded in the env file")
    down.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait for a clean stop"
    )
    down.add_argument("--env-file", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show the env file and process liveness")
    status.add_argument("--env-file", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.env_file is None:
        args.env_file = paths.default_env_file()
    args.env_file = args.env_file.expanduser().resolve()
    try:
        return int(args.func(args))
    except DevstackError as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
