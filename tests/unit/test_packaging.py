"""The project as an installed package: `make setup` installs it (editable) into .venv.

These tests check the install a user gets, not just the source tree: the `qbridge` console
script runs, and every package under libs/, tools/ and services/<name>/ is found by the
package list in pyproject.toml and imported from this checkout.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WHERE = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]


def _top_level_packages(folder: Path) -> list[str]:
    return sorted(p.parent.name for p in folder.glob("*/__init__.py"))


def test_every_service_folder_is_in_the_package_list() -> None:
    services = sorted(
        f"services/{d.name}" for d in (ROOT / "services").iterdir() if _top_level_packages(d)
    )
    assert services, "no service packages found"
    assert sorted(w for w in WHERE if w.startswith("services/")) == services


def test_runtime_dependencies_come_from_requirements_txt() -> None:
    assert PYPROJECT["project"]["dynamic"] == ["dependencies"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == [
        "requirements.txt"
    ]
    installed = importlib.metadata.requires("qbridge") or []
    pinned = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert pinned and sorted(installed) == sorted(pinned), "re-run `make setup`"


@pytest.mark.parametrize(
    "package",
    sorted({pkg for where in WHERE for pkg in _top_level_packages(ROOT / where)}),
)
def test_every_package_imports_from_this_checkout(package: str) -> None:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed"
    assert Path(spec.origin).resolve().is_relative_to(ROOT), spec.origin


@pytest.mark.parametrize(
    "module",
    ["intake", "orchestrator", "quantum_executor", "classical_fallback", "results_sink",
     "gateway", "devstack", "qbridge.cli"],
)  # fmt: skip
def test_python_dash_m_entry_points_exist(module: str) -> None:
    # devstack starts each service as `python -m <package>`; the images run the same command.
    spec = importlib.util.find_spec(f"{module}.__main__")
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).resolve().is_relative_to(ROOT)


def test_console_script_points_at_the_cli() -> None:
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="qbridge")
    assert entry.value == "qbridge.cli.app:main"
    from qbridge.cli.app import main

    assert entry.load() is main


def test_qbridge_command_runs_from_anywhere(tmp_path: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / "qbridge"
    assert script.is_file(), f"{script} missing: run `make setup`"
    # From an unrelated folder, so nothing is found through the working directory.
    done = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: qbridge")
    for command in ("solve", "submit", "watch", "get", "jobs"):
        assert command in done.stdout


def test_nothing_a_user_reads_points_outside_the_clone() -> None:
    # A user's clone has only this repository: docs, code and help text must stand alone
    # (benchmarks may read optional data from outside and say so; they are not checked here).
    readable = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    for folder in ("docs", "examples", "libs", "services", "tools", "deploy", "schemas"):
        readable += [
            p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
    offending = [
        str(p.relative_to(ROOT))
        for p in readable
        if p.suffix not in {".pyc", ".jar"} and "../shared" in p.read_text(errors="replace")
    ]
    assert not offending


def test_readme_links_the_spec() -> None:
    assert "(docs/spec.md)" in (ROOT / "README.md").read_text()
    assert (ROOT / "docs" / "spec.md").is_file()
