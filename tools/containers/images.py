"""Build every qbridge image with podman, base images included, from Debian packages.

Usage: ``python tools/containers/images.py [build|env|clean-base]`` (``make images``).

No container registry is reachable on the project's machines, so nothing is pulled:

* ``debian:bookworm``: ``debootstrap --variant=minbase`` into a temporary directory,
  imported with ``podman import`` (once: later runs find it in podman's store).
* Stand-ins for the official images docker-compose.yml names, built from it with
  Debian's packages (``base/*.Dockerfile``): ``python:3.11-slim-bookworm`` (Debian's
  python3 is 3.11), ``apache/kafka:<KAFKA_VERSION>`` (openjdk-17-jre-headless plus the
  broker jars ``make setup`` resolved into ``.cache/kafka``) and ``postgres:15-bookworm``
  (postgresql-15).
* The six service images: the repository's ``Dockerfile``, one ``--target`` each, on
  the Python stand-in (``--build-arg PYTHON_IMAGE``), tagged ``qbridge/<service>:<tag>``.

The stand-ins are tagged under ``localhost/qbridge-local/``, never as the official names;
``env`` prints the ``QBRIDGE_*_IMAGE`` variables that point docker-compose.yml at them.
Podman's layer cache makes a second run take seconds. podman, runc and debootstrap are
installed with apt-get when missing (root only), and podman reads the project's
``containers.conf`` (runtime runc, no default ulimits) through ``CONTAINERS_CONF``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONTAINERS_CONF = HERE / "containers.conf"

#: Service (compose name, build target) -> its Python package.
SERVICES: Mapping[str, str] = {
    "intake": "intake",
    "orchestrator": "orchestrator",
    "quantum-executor": "quantum_executor",
    "classical-fallback": "classical_fallback",
    "results-sink": "results_sink",
    "gateway": "gateway",
}
#: Host tools -> Debian packages (netavark/aardvark-dns: podman's network and DNS;
#: iptables: published ports).
HOST_PACKAGES: Mapping[str, Sequence[str]] = {
    "podman": ("podman", "netavark", "aardvark-dns", "iptables"),
    "runc": ("runc",),
    "debootstrap": ("debootstrap",),
}
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
LOCAL = "localhost/qbridge-local"
DEBIAN_IMAGE = f"{LOCAL}/debian:{DEBIAN_SUITE}"
PYTHON_IMAGE = f"{LOCAL}/python:3.11-slim-{DEBIAN_SUITE}"
POSTGRES_IMAGE = f"{LOCAL}/postgres:15-{DEBIAN_SUITE}"
#: Where the host keeps extra trusted CAs (copied into the Python stand-in so pip can
#: reach the package index through a TLS-inspecting egress, as the host does).
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


class ImageBuildError(RuntimeError):
    """A host tool is missing or a build step failed."""


def kafka_version() -> str:
    """The Kafka version the local stack runs (pinned in tools/kafka/pom.xml)."""
    from devstack.kafka import KAFKA_VERSION

    return KAFKA_VERSION


def kafka_image() -> str:
    """Local tag of the Kafka stand-in."""
    return f"{LOCAL}/kafka:{kafka_version()}"


def service_image(service: str, tag: str) -> str:
    """Tag of a service image, as docker-compose.yml names it."""
    return f"qbridge/{service}:{tag}"


def compose_env(tag: str = "dev") -> dict[str, str]:
    """Variables that make docker-compose.yml use the locally built images."""
    return {
        "QBRIDGE_PYTHON_IMAGE": PYTHON_IMAGE,
        "QBRIDGE_KAFKA_IMAGE": kafka_image(),
        "QBRIDGE_POSTGRES_IMAGE": POSTGRES_IMAGE,
        "QBRIDGE_VERSION": tag,
    }


def podman_env() -> dict[str, str]:
    """The environment podman runs with: the project's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def ensure_host_tools(tools: Sequence[str] = tuple(HOST_PACKAGES)) -> None:
    """Install the missing host tools with apt-get (root), else fail with the command.

    Raises:
        ImageBuildError: Not root, or apt-get failed.
    """
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if not missing:
        return
    packages = sorted({p for t in missing for p in HOST_PACKAGES[t]})
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"{', '.join(missing)} not found; install with: sudo {' '.join(command)}"
        )
    logger.info("installing %s with apt-get", " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], command):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ImageBuildError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


def podman(args: Sequence[str], *, check: bool = True, quiet: bool = False) -> str:
    """Run ``podman ARGS`` with the project's containers.conf; returns stdout.

    Raises:
        ImageBuildError: Non-zero exit while ``check``.
    """
    proc = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise ImageBuildError(f"podman {' '.join(args[:3])} ... failed ({proc.returncode})")
    return proc.stdout


def image_exists(name: str) -> bool:
    """True if podman's store holds ``name``."""
    proc = subprocess.run(
        ["podman", "image", "exists", name], env=podman_env(), check=False, capture_output=True
    )
    return proc.returncode == 0


def build_debian_base() -> None:
    """Import a debootstrapped minbase Debian as ``DEBIAN_IMAGE`` unless already stored."""
    if image_exists(DEBIAN_IMAGE):
        logger.info("%s: in podman's store", DEBIAN_IMAGE)
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qbridge-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        logger.info("debootstrap %s into %s (a few minutes, once)", DEBIAN_SUITE, rootfs)
        subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (rootfs / "etc" / "apt" / "sources.list").write_text(
            f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n"
            f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main\n"
            f"deb {DEBIAN_MIRROR}-security {DEBIAN_SUITE}-security main\n"
        )
        # Downloaded .debs and package lists are not part of an image.
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / cache).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "--change", "CMD /bin/bash", "-", DEBIAN_IMAGE],
            stdin=tar.stdout,
            env=podman_env(),
            stdout=subprocess.DEVNULL,
            check=False,
        )
        if tar.wait() != 0 or imported.returncode != 0:
            raise ImageBuildError(f"importing {rootfs} as {DEBIAN_IMAGE} failed")
    logger.info("%s: built in %.0fs", DEBIAN_IMAGE, time.monotonic() - started)


def _build(context: Path, dockerfile: Path, tag: str, extra: Sequence[str] = ()) -> None:
    # Docker's image format: the OCI one has no HEALTHCHECK (podman drops it).
    started = time.monotonic()
    podman(
        [
            "build", "--format", "docker", "--network", "host", "--layers", "--quiet",
            "-f", str(dockerfile), "-t", tag, *extra, str(context),
        ]
    )  # fmt: skip
    logger.info("%s: %.0fs", tag, time.monotonic() - started)


def build_standins() -> None:
    """Build the Python, Kafka and PostgreSQL stand-ins (cached layers after the first)."""
    base = HERE / "base"
    debian = ["--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}"]
    with tempfile.TemporaryDirectory(prefix="qbridge-ctx-", dir="/var/tmp") as tmp:
        ctx = Path(tmp)
        (ctx / "ca").mkdir()
        for crt in sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []:
            shutil.copy2(crt, ctx / "ca" / crt.name)
        # Fixed mtimes keep the COPY layer cached across runs.
        for path in ctx.rglob("*"):
            os.utime(path, (0, 0))
        _build(ctx, base / "python.Dockerfile", PYTHON_IMAGE, debian)
    _build(base, base / "postgres.Dockerfile", POSTGRES_IMAGE, debian)

    from devstack.kafka import jar_dir

    jars = jar_dir(kafka_version())
    if not any(jars.glob("kafka_*.jar")):
        raise ImageBuildError(f"no Kafka jars in {jars}: run `make setup` first")
    with tempfile.TemporaryDirectory(prefix="qbridge-ctx-", dir="/var/tmp") as tmp:
        ctx = Path(tmp)
        shutil.copytree(jars, ctx / "libs", ignore=shutil.ignore_patterns(".*"))
        shutil.copytree(base / "kafka-bin", ctx / "bin")
        for name in ("log4j.properties", "tools-log4j.properties"):
            shutil.copy2(base / name, ctx / name)
        _build(ctx, base / "kafka.Dockerfile", kafka_image(), debian)


def build_services(tag: str, services: Sequence[str] = tuple(SERVICES)) -> None:
    """Build the service images from the repository's Dockerfile, one target each."""
    for service in services:
        _build(
            ROOT,
            ROOT / "Dockerfile",
            service_image(service, tag),
            ["--target", service, "--build-arg", f"PYTHON_IMAGE={PYTHON_IMAGE}"],
        )


def build_all(tag: str, services: Sequence[str] = tuple(SERVICES)) -> float:
    """Build every image; returns the seconds it took."""
    started = time.monotonic()
    ensure_host_tools()
    build_debian_base()
    build_standins()
    build_services(tag, services)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="tools/containers/images.py", description=__doc__)
    parser.add_argument("command", nargs="?", default="build", choices=["build", "env"])
    parser.add_argument("--tag", default=os.environ.get("QBRIDGE_VERSION", "dev"))
    parser.add_argument("--service", action="append", choices=list(SERVICES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "env":
        for key, value in compose_env(args.tag).items():
            print(f"{key}={value}")
        return 0
    try:
        seconds = build_all(args.tag, args.service or tuple(SERVICES))
    except (ImageBuildError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"images built in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
