"""``make compose-test``: run docker-compose.yml for real with podman, then remove it all.

1. Builds every image (``images.py``: base stand-ins from Debian packages, service images
   from the repository's Dockerfile; cached after the first run).
2. Serves podman's Docker-compatible API (``podman system service``) on a private socket
   and runs Debian's ``docker-compose`` (v1.29, the compose file's own semantics: it waits
   on ``service_healthy`` / ``service_completed_successfully``) against it, with a
   throwaway ``.env``: random secrets, free 127.0.0.1 ports, a unique project name.
3. Makes a dev CA and the gateway's certificate (``ops.devcerts``), starts Kafka (KRaft,
   SASL/SCRAM + ACLs), PostgreSQL, the one-shot jobs (topics, Kafka users and ACLs,
   schemas and per-service logins) and every service (not Prometheus and Grafana: their
   images are neither reachable nor buildable from Debian packages here), waits for every
   healthcheck, checks the refusals (Kafka without credentials, the gateway's database
   role writing, plaintext gRPC), publishes the sample workload (``qbridge.samples``) to
   the published Kafka port as the admin, waits for every final outcome, runs a Solve
   through the gateway container over TLS with the CLI, and checks the stored rows in
   PostgreSQL.
4. Always (also on failure or Ctrl-C): ``docker-compose down --volumes``, then checks that
   no container, network or volume of the project is left (removing stragglers, failing).

Podman runs healthchecks from systemd timers; where systemd is not PID 1 (containers,
CI sandboxes) nothing would run them, so a thread runs ``podman healthcheck run`` on
every container of the project that has one, as Docker's engine would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images  # a sibling script, not a package

logger = logging.getLogger(__name__)

ROOT = images.ROOT
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: Jobs that run once and exit 0 before the services start.
ONE_SHOTS: Sequence[str] = ("kafka-init", "kafka-users", "db-init-results", "db-init-orchestrator")
#: Started by the test: everything but the observability pair.
STACK: Sequence[str] = ("kafka", "postgres", *ONE_SHOTS, *images.SERVICES)
#: Variables of .env.example that are not random secrets although empty there.
NOT_SECRETS: Sequence[str] = ("QBRIDGE_API_KEYS", "QBRIDGE_TLS_DIR")
#: The image's user (Dockerfile): it must read the gateway's key.
IMAGE_UID = 10001
#: Published ports -> env variable naming it in docker-compose.yml.
PORT_VARS: Sequence[str] = (
    "KAFKA_HOST_PORT",
    "QBRIDGE_GATEWAY_PORT",
    "QBRIDGE_DASHBOARD_PORT",
    "PROMETHEUS_PORT",
    "GRAFANA_PORT",
)
PROJECT_LABEL = "com.docker.compose.project"


class ComposeTestError(RuntimeError):
    """The stack did not come up, the workload failed, or something was left behind."""


# ------------------------------------------------------------------ environment


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def throwaway_env(
    project: str, api_key: str, tag: str, tls_dir: Path | None = None
) -> dict[str, str]:
    """A complete ``.env`` for one run: random secrets, free ports, the local images.

    Every variable left empty in ``.env.example`` is a secret and gets a fresh random
    value, except the API keys (``api_key`` for tenant ``compose-test``) and the TLS
    folder (``tls_dir``, default ``.cache/tls``).
    """
    example = parse_env((ROOT / ".env.example").read_text())
    secret_vars = [k for k, v in example.items() if not v and k not in NOT_SECRETS]
    env = {
        **example,
        **images.compose_env(tag),
        "COMPOSE_PROJECT_NAME": project,
        **{k: secrets.token_urlsafe(24) for k in secret_vars},
        "QBRIDGE_API_KEYS": json.dumps({api_key: "compose-test"}),
        "QBRIDGE_TLS_DIR": str(tls_dir or ROOT / ".cache" / "tls"),
    }
    env.update({var: str(free_port()) for var in PORT_VARS})
    return env


def parse_env(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (comments and blank lines skipped)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def render_env(env: Mapping[str, str]) -> str:
    """The env file text for ``env`` (docker-compose v1 takes values verbatim)."""
    return "".join(f"{k}={v}\n" for k, v in env.items())


# ------------------------------------------------------------------ podman


def podman_json(args: Sequence[str]) -> Any:
    """``podman ARGS --format json`` parsed (an empty list on failure: racing removals)."""
    proc = subprocess.run(
        ["podman", *args, "--format", "json"],
        env=images.podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def project_containers(project: str) -> list[dict[str, Any]]:
    """Every container (any state) of the compose project."""
    found = podman_json(["ps", "-a", "--filter", f"label={PROJECT_LABEL}={project}"])
    return list(found)


def health_of(container: str) -> str | None:
    """``healthy`` / ``unhealthy`` / ``starting``, or None without a healthcheck."""
    data = podman_json(["inspect", "--type", "container", container])
    if not data:
        return None
    state = data[0].get("State", {})
    health = state.get("Health") or state.get("Healthcheck")
    config = data[0].get("Config", {}).get("Healthcheck")
    if not config or config.get("Test", [""])[0] == "NONE":
        return None
    return str((health or {}).get("Status") or "starting")


class HealthDriver(threading.Thread):
    """Runs ``podman healthcheck run`` on the project's running containers.

    Each at the interval its healthcheck configures, so ``retries`` means what it means
    to Docker.
    """

    def __init__(self, project: str) -> None:
        super().__init__(name="health-driver", daemon=True)
        self.project = project
        self.stop = threading.Event()
        self._due: dict[str, float] = {}

    def _interval(self, container: str) -> float | None:
        data = podman_json(["inspect", "--type", "container", container])
        check = (data[0].get("Config", {}).get("Healthcheck") or {}) if data else {}
        if not check or check.get("Test", ["NONE"])[0] == "NONE":
            return None
        return max(float(check.get("Interval") or 30e9) / 1e9, 1.0)  # nanoseconds

    def run(self) -> None:
        while not self.stop.wait(1.0):
            now = time.monotonic()
            for ctr in project_containers(self.project):
                cid = ctr["Id"]
                if ctr.get("State") != "running" or self._due.get(cid, 0.0) > now:
                    continue
                interval = self._interval(cid)
                if interval is None:
                    self._due[cid] = float("inf")
                    continue
                self._due[cid] = now + interval
                try:
                    subprocess.run(
                        ["podman", "healthcheck", "run", cid],
                        env=images.podman_env(),
                        capture_output=True,
                        check=False,
                        timeout=120,
                    )
                except subprocess.TimeoutExpired:
                    # Podman records the timeout itself; keep driving the others.
                    logger.warning("healthcheck of %s did not return in 120s", cid[:12])


@contextlib.contextmanager
def podman_api(workdir: Path) -> Iterator[str]:
    """Serve podman's Docker-compatible API on a private socket; yields DOCKER_HOST."""
    sock = workdir / "podman.sock"
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        env=images.podman_env(),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "podman-service.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ComposeTestError(f"podman system service did not start: {workdir}")
            time.sleep(0.1)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the run


class ComposeRun:
    """One compose project: docker-compose commands with its env file and socket."""

    def __init__(self, exe: str, project: str, env_file: Path, docker_host: str) -> None:
        self.exe = exe
        self.project = project
        self.env_file = env_file
        self.docker_host = docker_host

    def compose(self, args: Sequence[str], *, timeout: float, check: bool = True) -> str:
        cmd = [
            self.exe, "--project-name", self.project, "--env-file", str(self.env_file),
            "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT), *args,
        ]  # fmt: skip
        env = {**os.environ, "DOCKER_HOST": self.docker_host}
        # The env file is the whole configuration: the caller's QBRIDGE_* stay out.
        env = {k: v for k, v in env.items() if not k.startswith(("QBRIDGE_", "POSTGRES_"))}
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise ComposeTestError(
                f"docker-compose {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
            )
        return proc.stdout

    def container(self, service: str) -> str:
        ids = self.compose(["ps", "-q", service], timeout=60).split()
        if not ids:
            raise ComposeTestError(f"no container for {service}")
        return ids[0]

    def wait_healthy(self, services: Sequence[str], timeout: float) -> dict[str, float]:
        """Seconds until each service's container reported healthy (kafka-init: exit 0)."""
        started = time.monotonic()
        ready: dict[str, float] = {}
        while len(ready) < len(services):
            for svc in services:
                if svc in ready:
                    continue
                ctr = self.container(svc)
                info = podman_json(["inspect", "--type", "container", ctr])
                state = info[0]["State"] if info else {}
                if svc in ONE_SHOTS:
                    if state.get("Status") == "exited":
                        if state.get("ExitCode") != 0:
                            raise ComposeTestError(f"{svc} exited {state.get('ExitCode')}")
                        ready[svc] = time.monotonic() - started
                    continue
                if state.get("Status") == "exited":
                    raise ComposeTestError(f"{svc} exited ({state.get('ExitCode')})")
                if health_of(ctr) == "healthy":
                    ready[svc] = time.monotonic() - started
                    logger.info("  %-20s healthy after %.0fs", svc, ready[svc])
            if time.monotonic() - started > timeout:
                missing = sorted(set(services) - set(ready))
                raise ComposeTestError(f"not healthy within {timeout:.0f}s: {missing}")
            time.sleep(2)
        return ready

    def psql(self, sql: str, env: Mapping[str, str], login: tuple[str, str] | None = None) -> str:
        """Run one query in the PostgreSQL container; returns its unaligned output.

        Args:
            sql: The query.
            env: The run's env (database name, the owner's credentials).
            login: (user, password) to run it as instead of the owner.

        Raises:
            ComposeTestError: psql failed (its stderr in the message).
        """
        user, password = login or (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
        proc = subprocess.run(
            [
                "podman", "exec", "-e", "PGPASSWORD", self.container("postgres"),
                "psql", "-U", user, "-v", "ON_ERROR_STOP=1",
                "-d", env["POSTGRES_DB"], "-h", "127.0.0.1", "-tA", "-c", sql,
            ],
            env={**images.podman_env(), "PGPASSWORD": password},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise ComposeTestError(f"psql failed: {proc.stderr}")
        return proc.stdout.strip()

    def logs_tail(self, lines: int = 40) -> str:
        return self.compose(["logs", "--no-color", f"--tail={lines}"], timeout=120, check=False)

    def down(self) -> list[str]:
        """Remove the project; returns what had to be force-removed afterwards."""
        # Anonymous volumes carry no project label: note them before their containers go.
        volumes = {
            str(m["Name"])
            for ctr in project_containers(self.project)
            for info in podman_json(["inspect", "--type", "container", ctr["Id"]])
            for m in info.get("Mounts", [])
            if m.get("Type") == "volume" and m.get("Name")
        }
        self.compose(
            ["down", "--volumes", "--remove-orphans", "--timeout", "20"], timeout=300, check=False
        )
        leftovers = []
        for ctr in project_containers(self.project):
            leftovers.append(f"container {ctr.get('Names')}")
            images.podman(["rm", "-f", "-v", ctr["Id"]], check=False, quiet=True)
        label = f"label={PROJECT_LABEL}={self.project}"
        for kind in ("network", "volume"):
            for item in podman_json([kind, "ls", "--filter", label]):
                name = item.get("Name") or item.get("name")
                leftovers.append(f"{kind} {name}")
                images.podman([kind, "rm", "-f", str(name)], check=False, quiet=True)
        for volume in sorted(volumes):
            if podman_json(["volume", "inspect", volume]):
                leftovers.append(f"volume {volume}")
                images.podman(["volume", "rm", "-f", volume], check=False, quiet=True)
        return leftovers


def kafka_admin(env: Mapping[str, str]) -> Any:
    """``KafkaSettings`` of the admin on the published port (SASL/PLAIN)."""
    from qbridge.bus import KafkaSettings

    return KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{env['KAFKA_HOST_PORT']}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="admin",
        sasl_password=env["QBRIDGE_KAFKA_ADMIN_PASSWORD"],
    )


def check_refusals(run: ComposeRun, env: Mapping[str, str]) -> list[str]:
    """What the locked-down stack must refuse; returns what was checked.

    Raises:
        ComposeTestError: Something that should have been refused was allowed.
    """
    import grpc
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    checked = []
    # Kafka: a client without credentials gets no metadata; the admin does.
    plain = {
        "bootstrap.servers": f"127.0.0.1:{env['KAFKA_HOST_PORT']}",
        "socket.timeout.ms": 3000,
        "log_level": 0,  # the refused connections are expected: no log noise
    }
    try:
        AdminClient(plain).list_topics(timeout=5)
    except KafkaException:
        checked.append("kafka refuses a client without credentials")
    else:
        raise ComposeTestError("Kafka answered a client without credentials")
    AdminClient(kafka_admin(env).client_config()).list_topics(timeout=15)
    # PostgreSQL: the gateway's login reads the results, may not write them.
    gateway = ("gateway_svc", env["QBRIDGE_DB_PASSWORD_GATEWAY"])
    run.psql("SELECT count(*) FROM jobs", env, login=gateway)
    try:
        run.psql("DELETE FROM jobs", env, login=gateway)
    except ComposeTestError as exc:
        if "permission denied" not in str(exc):
            raise
        checked.append("the gateway's database role cannot write")
    else:
        raise ComposeTestError("the gateway's database role deleted from jobs")
    # gRPC: the gateway port speaks TLS only.
    target = f"127.0.0.1:{env['QBRIDGE_GATEWAY_PORT']}"
    with grpc.insecure_channel(target) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise ComposeTestError(f"plaintext gRPC answered: {exc.code()}") from exc
            checked.append("the gateway refuses plaintext gRPC")
        else:
            raise ComposeTestError("the gateway answered plaintext gRPC")
    return checked


def run_workload(
    run: ComposeRun, env: Mapping[str, str], api_key: str, tls_dir: Path
) -> dict[str, Any]:
    """Sample workload over Kafka, a Solve through the gateway over TLS, rows in PostgreSQL."""
    from devstack.run import publish_samples, wait_final
    from qbridge.bus import BusProducer
    from qbridge.contracts import AvroCodec, default_registry

    kafka = kafka_admin(env)
    codec = AvroCodec(default_registry())
    producer = BusProducer(kafka, codec, client_id="compose-test")
    tenant = "compose-samples"
    started = time.monotonic()
    expected = publish_samples(producer, tenant)
    done = wait_final(kafka, codec, expected, timeout=300.0)
    missing = sorted(expected[c] for c in set(expected) - set(done))
    if missing:
        raise ComposeTestError(f"sample jobs not final in time: {missing}")
    workload_s = time.monotonic() - started

    solve = subprocess.run(
        [
            sys.executable, "-m", "qbridge.cli", "--target",
            f"127.0.0.1:{env['QBRIDGE_GATEWAY_PORT']}", "--ca-cert", str(tls_dir / "ca.crt"),
            "--json", "solve",
            str(ROOT / "examples" / "maxcut.json"), "--deadline-ms", "5000",
        ],
        env={**os.environ, "QBRIDGE_API_KEY": api_key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    if solve.returncode != 0:
        raise ComposeTestError(f"Solve through the gateway failed: {solve.stdout}{solve.stderr}")
    answer = json.loads(solve.stdout)
    job_id = answer["job_id"]

    quoted = ", ".join(f"'{c}'" for c in expected)
    deadline = time.monotonic() + 60
    while True:
        stored = int(
            run.psql(
                "SELECT count(*) FROM jobs j JOIN solutions s USING (job_id)"
                f" WHERE j.tenant = '{tenant}' AND j.correlation_id IN ({quoted})",
                env,
            )
        )
        solve_row = run.psql(f"SELECT tenant FROM jobs WHERE job_id = '{job_id}'", env)
        if (stored >= len(expected) and solve_row) or time.monotonic() > deadline:
            break
        time.sleep(1)
    if stored < len(expected):
        raise ComposeTestError(f"{stored}/{len(expected)} sample results stored in PostgreSQL")
    if solve_row != "compose-test":
        raise ComposeTestError(f"Solve job {job_id} not stored for its tenant: {solve_row!r}")
    return {
        "sample_jobs": len(expected),
        "workload_s": round(workload_s, 1),
        "solve_job": job_id,
        "solve_source": answer.get("source"),
        "stored_rows": stored,
    }


def dev_certificates(out: Path) -> Path:
    """A dev CA and the gateway's certificate in ``out``, its key readable by the image's user."""
    from ops.devcerts import generate

    files = generate(out)
    key = files["gateway.key"]
    if os.geteuid() == 0:  # rootful podman: the container's uid is the host's
        os.chown(key, IMAGE_UID, IMAGE_UID)
        key.chmod(0o600)
    return out


def compose_test(build: bool, timeout: float, keep_logs: Path | None) -> dict[str, Any]:
    """The whole test; returns timings and counts."""
    from ops.tooling import ensure

    timings: dict[str, Any] = {}
    started = time.monotonic()
    exe = ensure("docker-compose")["docker-compose"]
    images.ensure_host_tools()
    tag = os.environ.get("QBRIDGE_VERSION", "dev")
    if build:
        timings["images_s"] = round(images.build_all(tag), 1)
    project = f"qbridge-ct-{os.getpid()}"
    api_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="qbridge-compose-test-") as tmp:
        workdir = Path(tmp)
        tls_dir = dev_certificates(workdir / "tls")
        env = throwaway_env(project, api_key, tag, tls_dir)
        env_file = workdir / "compose.env"
        env_file.write_text(render_env(env))
        env_file.chmod(0o600)
        with podman_api(workdir) as docker_host:
            run = ComposeRun(exe, project, env_file, docker_host)
            driver = HealthDriver(project)
            driver.start()
            failed = True
            try:
                up = time.monotonic()
                logger.info("==> compose up (%s): %s", project, " ".join(STACK))
                run.compose(["up", "--detach", "--no-build", *STACK], timeout=timeout)
                run.wait_healthy(STACK, timeout)
                timings["up_s"] = round(time.monotonic() - up, 1)
                logger.info("==> sample workload and a Solve through the gateway")
                timings["refused"] = check_refusals(run, env)
                timings.update(run_workload(run, env, api_key, tls_dir))
                failed = False
            finally:
                if failed or keep_logs:
                    logs = run.logs_tail(200 if keep_logs else 40)
                    if keep_logs:
                        keep_logs.write_text(logs)
                    if failed:
                        print(logs[-20000:], file=sys.stderr)
                driver.stop.set()
                logger.info("==> compose down")
                down = time.monotonic()
                leftovers = run.down()
                timings["down_s"] = round(time.monotonic() - down, 1)
                driver.join(150)
    if leftovers:
        raise ComposeTestError(f"left behind after down (now removed): {leftovers}")
    timings["total_s"] = round(time.monotonic() - started, 1)
    return timings


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="tools/containers/compose_test.py", description=__doc__)
    parser.add_argument("--no-build", action="store_true", help="use the images as they are")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for up + healthy")
    parser.add_argument("--logs", type=Path, help="write the services' logs here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # SIGTERM (CI timeout) unwinds through the finally blocks like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = compose_test(not args.no_build, args.timeout, args.logs)
    except (ComposeTestError, images.ImageBuildError) as exc:
        print(f"compose-test FAILED: {exc}", file=sys.stderr)
        return 1
    print("compose-test passed: " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
