"""Install the tools the deployment tests call, once.

* ``promtool`` (package ``prometheus``), ``chromium`` and ``docker-compose`` (v1, used
  only as a compose-file parser: ``docker-compose config`` needs no Docker engine) come
  from Debian's archive with ``apt-get``; that needs root, otherwise the error gives the
  command to run.
* ``kustomize``: a ``kustomize`` on ``PATH``, else ``kubectl kustomize`` (kubectl embeds
  it), else ``go install sigs.k8s.io/kustomize/kustomize/v5`` into ``.cache/ops/bin``
  (a Go module built from the Go module proxy, about 100 s once).

Usage: ``python -m ops.tooling [TOOL ...]`` (default: every known tool).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: Tool (executable) -> Debian package providing it.
PACKAGES: dict[str, str] = {
    "promtool": "prometheus",
    "chromium": "chromium",
    "docker-compose": "docker-compose",
}

#: kustomize built from source when neither kustomize nor kubectl is installed.
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5@v5.5.0"
CACHE_BIN = Path(__file__).resolve().parents[2] / ".cache" / "ops" / "bin"

_LOCK = Path("/tmp/qbridge-ops-apt.lock")
# Keeps package maintainer scripts from starting daemons (e.g. a Prometheus server on :9090).
_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class ToolError(RuntimeError):
    """A tool is missing and could not be installed."""


def apt_command(packages: Sequence[str]) -> str:
    """The shell command that installs ``packages`` (for the error message)."""
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(packages)


@contextlib.contextmanager
def _no_daemon_start() -> Iterator[None]:
    if _POLICY_RC_D.exists():
        yield
        return
    _POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
    _POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        _POLICY_RC_D.unlink(missing_ok=True)


def _run(cmd: list[str], timeout: float) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    proc = subprocess.run(
        cmd, env=env, timeout=timeout, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def ensure(*tools: str) -> dict[str, str]:
    """Paths of ``tools``, installing the missing ones with one ``apt-get install``.

    Returns:
        Tool name -> absolute path.

    Raises:
        ToolError: Unknown tool, not root, or apt failed.
    """
    unknown = [t for t in tools if t not in PACKAGES]
    if unknown:
        raise ToolError(f"unknown tools {unknown} (known: {sorted(PACKAGES)})")
    found = {t: shutil.which(t) for t in tools}
    missing = [t for t, p in found.items() if p is None]
    if missing:
        packages = sorted({PACKAGES[t] for t in missing})
        if os.geteuid() != 0:
            raise ToolError(
                f"{', '.join(missing)} not found; install with: sudo sh -c "
                f"'{apt_command(packages)}'"
            )
        _LOCK.touch(exist_ok=True)
        with _LOCK.open() as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
            still = [t for t in missing if shutil.which(t) is None]
            if still:
                packages = sorted({PACKAGES[t] for t in still})
                started = time.monotonic()
                logger.info("installing %s with apt-get", ", ".join(packages))
                with _no_daemon_start():
                    _run(["apt-get", "update"], timeout=600)
                    _run(
                        [
                            "apt-get", "install", "-y", "--no-install-recommends",
                            "-o", "DPkg::Lock::Timeout=600", *packages,
                        ],
                        timeout=1800,
                    )  # fmt: skip
                logger.info(
                    "installed %s in %.0fs", ", ".join(packages), time.monotonic() - started
                )
        found = {t: shutil.which(t) for t in tools}
        lost = [t for t, p in found.items() if p is None]
        if lost:
            raise ToolError(f"apt-get ran but {lost} are still not on PATH")
    return {t: str(p) for t, p in found.items()}


def kustomize_command() -> list[str]:
    """The command that renders a kustomization: append the directory to it.

    Raises:
        ToolError: Neither kustomize nor kubectl is installed and Go cannot build it.
    """
    for found in (shutil.which("kustomize"), CACHE_BIN / "kustomize"):
        if found and Path(found).is_file():
            return [str(found), "build"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        probe = subprocess.run(
            [kubectl, "kustomize", "--help"], capture_output=True, timeout=60, check=False
        )
        if probe.returncode == 0:
            return [kubectl, "kustomize"]
    go = shutil.which("go")
    if go is None:
        raise ToolError("no kustomize, no kubectl and no Go toolchain to build kustomize")
    CACHE_BIN.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    logger.info("building %s with go install", KUSTOMIZE_MODULE)
    proc = subprocess.run(
        [go, "install", KUSTOMIZE_MODULE],
        env={**os.environ, "GOBIN": str(CACHE_BIN)},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolError(f"go install {KUSTOMIZE_MODULE} failed:\n{proc.stderr[-3000:]}")
    logger.info("built kustomize in %.0fs", time.monotonic() - started)
    return [str(CACHE_BIN / "kustomize"), "build"]


def main(argv: list[str] | None = None) -> int:
    """CLI: install the named tools (default all) and print their paths."""
    parser = argparse.ArgumentParser(prog="python -m ops.tooling", description=__doc__)
    parser.add_argument("tools", nargs="*", default=[*sorted(PACKAGES), "kustomize"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        apt_tools = [t for t in args.tools if t != "kustomize"]
        paths = ensure(*apt_tools) if apt_tools else {}
        if "kustomize" in args.tools:
            paths["kustomize"] = " ".join(kustomize_command())
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for tool, path in paths.items():
        print(f"{tool}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
