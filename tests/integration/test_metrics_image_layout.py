"""Each service started the way its image starts it, as far as this machine allows.

There is no Docker engine here, so the images are not built. Instead each Dockerfile
is read and its result imitated: only the files its ``COPY`` lines copy, at the same
relative places; its ``ENV`` (``PYTHONPATH``, ``HOME=/tmp``, ports) with ``/app`` mapped
to that folder; its ``CMD``; run as uid/gid 10001 with the application folder mounted
read-only (a private mount namespace) and Python's ``-S`` so the dev venv's path file
cannot supply a module the image would lack. Each service must become ready against the
real Kafka and PostgreSQL, pass its own ``HEALTHCHECK`` command, serve ``/metrics`` that
``promtool check metrics`` accepts, and exit 0 on SIGTERM.

The image's ``pip install -r requirements.txt`` is imitated by a staged site-packages:
the files of exactly the distributions requirements.txt pulls in (not the dev tools),
hard-linked from the dev venv (copied across file systems) into a world-readable folder,
so uid 10001 can read them wherever the clone lives (a mode-700 home or ``mktemp -d``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devstack.pipeline import free_port
from ops.tooling import ensure
from qbridge.bus import KafkaSettings, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
SERVICES = ("intake", "orchestrator", "quantum-executor", "classical-fallback", "results-sink",
            "gateway")  # fmt: skip
UID = 10001


@dataclass
class Image:
    """What a Dockerfile says about the image it builds."""

    copies: list[tuple[str, str]]
    env: dict[str, str]
    cmd: list[str]
    healthcheck: list[str]
    user: str
    workdir: str


def read_dockerfile(path: Path, target: str) -> Image:
    """The image of one build target: its stage and the stages it is built ``FROM``."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    parents: dict[str, str] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            base, _, name = rest.partition(" AS ")
            current = stages.setdefault(name.strip(), [])
            parents[name.strip()] = base.strip()
            continue
        current.append((word.upper(), rest.strip()))
    chain = [target]
    while parents.get(chain[0]) in stages:
        chain.insert(0, parents[chain[0]])
    copies, env, cmd, health, user, workdir = [], {}, [], [], "", "/"
    for word, rest in (ins for stage in chain for ins in stages[stage]):
        if word == "COPY":
            *flags, src, dst = rest.split()
            # `--from=code /app/X`: the staging stage holds the repository's X at /app/X.
            copies.append((src.removeprefix("/app/") if flags else src, dst))
        elif word == "ENV":
            env.update(item.split("=", 1) for item in rest.split())
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "HEALTHCHECK":
            health = json.loads(rest.split(" CMD ", 1)[1])
        elif word == "USER":
            user = rest
        elif word == "WORKDIR":
            workdir = rest
    return Image(copies, env, cmd, health, user, workdir)


def assemble(image: Image, app: Path) -> None:
    """Copy what the Dockerfile copies into ``app`` (standing in for WORKDIR)."""
    for src, dst in image.copies:
        source = ROOT / src
        target = app / dst
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name if dst.endswith("/") else target)


#: A system-wide Python 3.11 (like the image's /usr/local/bin/python): the dev venv's
#: interpreter may live where uid 10001 cannot reach it (e.g. under /root). The staged
#: runtime part of the venv's site-packages (cp311 wheels) goes on PYTHONPATH; ``-S`` keeps
#: the dev venv's .pth files (the editable install of this project) out.
SYSTEM_PYTHON = shutil.which("python3.11", path="/usr/local/bin:/usr/bin")
SANDBOX = os.geteuid() == 0 and SYSTEM_PYTHON is not None


def _python_argv(argv: list[str]) -> list[str]:
    assert argv[0] == "python", argv
    return [SYSTEM_PYTHON if SANDBOX and SYSTEM_PYTHON else sys.executable, "-S", *argv[1:]]


def _sandboxed(app: Path, argv: list[str]) -> list[str]:
    """Run ``argv`` as uid 10001 with ``app`` read-only (as root; else just as is)."""
    if not SANDBOX:
        return argv
    script = (
        f'mount --bind "{app}" "{app}" && mount -o remount,bind,ro "{app}" && '
        f'exec setpriv --reuid={UID} --regid={UID} --clear-groups "$@"'
    )
    return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


class Started:
    def __init__(self, name: str, image: Image, app: Path, env: dict[str, str], log: Path):
        self.name, self.image, self.app, self.env, self.log = name, image, app, env, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                _sandboxed(app, _python_argv(image.cmd)),
                cwd=app,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def port(self) -> int:
        return int(self.env["QBRIDGE_HTTP_PORT"])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.tail()}"
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready in {timeout}s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-25:])


def runtime_distributions(site: Path) -> list[Distribution]:
    """The distributions ``pip install -r requirements.txt`` installs, found in ``site``."""
    installed = {canonicalize_name(d.metadata["Name"]): d for d in distributions(path=[str(site)])}
    todo = [
        Requirement(line)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    found: dict[str, Distribution] = {}
    done: set[tuple[str, str]] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        assert name in installed, f"{req} is not installed in {site}: run `make setup`"
        dist = found.setdefault(name, installed[name])
        for extra in ("", *sorted(req.extras)):
            if (name, extra) in done:
                continue
            done.add((name, extra))
            for line in dist.requires or []:
                dep = Requirement(line)
                if dep.marker is None or dep.marker.evaluate({"extra": extra}):
                    todo.append(dep)
    return sorted(found.values(), key=lambda d: d.metadata["Name"])


def _world_readable_tmp(near: Path) -> Path:
    """A temp folder every user can reach, on ``near``'s file system if one is (hard links)."""

    def reachable(d: Path) -> bool:
        return d.is_dir() and all(p.stat().st_mode & 0o001 for p in (d, *d.parents))

    candidates = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]
    usable = [d for d in candidates if reachable(d)]
    assert usable, f"no folder that uid {UID} can reach among {candidates}"
    device = near.stat().st_dev
    parent = next((d for d in usable if d.stat().st_dev == device), usable[0])
    base = Path(tempfile.mkdtemp(prefix="qbridge-image-layout-", dir=parent))
    base.chmod(0o755)
    return base


def stage_site_packages(site: Path, target: Path) -> int:
    """Link the runtime distributions' files from ``site`` into ``target``; returns the count.

    Hard links cost no space and keep each file's mode; a file other users cannot read, or
    one on another file system, is copied instead (and made readable) so the original is
    never changed.
    """
    count = 0
    for dist in runtime_distributions(site):
        assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD"
        for rel in dist.files:
            src = Path(str(dist.locate_file(rel))).resolve()
            if not src.is_relative_to(site) or not src.is_file():
                continue  # console scripts in bin/, or a RECORD entry of a removed file
            dst = target / src.relative_to(site)
            dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            if dst.exists():
                continue  # a folder shared by two distributions (e.g. google/)
            try:
                if not src.stat().st_mode & 0o004:
                    raise PermissionError(src)
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
                dst.chmod(dst.stat().st_mode | 0o444)
            count += 1
    return count


@pytest.fixture(scope="module")
def layout_root() -> Iterator[Path]:
    """A world-readable folder (like image layers) with the staged ``site-packages``.

    pytest's own tmp dirs, and perhaps the clone with its .venv, are private to their owner.
    """
    venv_site = Path(sysconfig.get_paths()["purelib"]).resolve()
    base = _world_readable_tmp(near=venv_site)
    try:
        started_at = time.monotonic()
        files = stage_site_packages(venv_site, base / "site-packages")
        print(f"staged {files} files of site-packages in {time.monotonic() - started_at:.1f}s")
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def started(
    stack: Any, kafka_settings: KafkaSettings, layout_root: Path
) -> Iterator[dict[str, Started]]:
    ensure_topics(kafka_settings)
    base, site = layout_root, layout_root / "site-packages"
    logs = ARTIFACTS / f"image-layout-{time.strftime('%H%M%S')}"
    logs.mkdir(parents=True, exist_ok=True)
    out: dict[str, Started] = {}
    for name in SERVICES:
        image = read_dockerfile(ROOT / "Dockerfile", name)
        assert image.user == f"{UID}:{UID}" and image.workdir == "/app"
        (base / name).mkdir(mode=0o755)
        app = base / name / "app"
        app.mkdir(mode=0o755)
        assemble(image, app)
        env = {k: v.replace("/app", str(app)) for k, v in image.env.items()}
        env["PYTHONPATH"] = f"{env['PYTHONPATH']}:{site}"
        env.update(
            PATH="/usr/bin:/bin",
            KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap_servers,
            DATABASE_URL=stack.dsn,
            QBRIDGE_HTTP_PORT=str(free_port()),
            QBRIDGE_GRPC_PORT=str(free_port()),
            QBRIDGE_CREATE_TOPICS="false",
            QBRIDGE_API_KEYS=json.dumps({"k": "t"}),
            QBRIDGE_GRPC_ALLOW_PLAINTEXT="true",
            QBRIDGE_LOG_FORMAT="json",
        )
        out[name] = Started(name, image, app, env, logs / f"{name}.log")
    try:
        for s in out.values():
            s.wait_ready(150)
        yield out
    finally:
        for s in out.values():
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_from_its_image_layout(started: dict[str, Started], name: str) -> None:
    s = started[name]
    assert s.image.cmd[:2] == ["python", "-m"]
    # The image's own HEALTHCHECK command, in the same sandbox.
    hc = subprocess.run(
        _sandboxed(s.app, _python_argv(s.image.healthcheck)),
        cwd=s.app,
        env=s.env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert hc.returncode == 0, hc.stderr
    status, text = s.get("/metrics")
    assert status == 200
    promtool = ensure("promtool")["promtool"]
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr
    # Nothing under the application folder was written (read-only in the image).
    assert not list(s.app.rglob("__pycache__")), "the service wrote bytecode into /app"
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(60) == 0, s.tail()
