"""One-way architecture: no service imports another service, and libs/ imports no service.

Read with ``ast`` (nothing is imported), so a violation is found even in a module no
test imports. Relative imports stay inside their own package and are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Service directory -> its top-level package.
SERVICE_PACKAGES = {
    "intake": "intake",
    "orchestrator": "orchestrator",
    "quantum-executor": "quantum_executor",
    "classical-fallback": "classical_fallback",
    "results-sink": "results_sink",
    "gateway": "gateway",
}


def imported_roots(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, top-level package)`` of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".", 1)[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".", 1)[0]


def violations(files: list[Path], forbidden: set[str]) -> list[str]:
    """``file:line imports package`` for each import of a forbidden package."""
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line} imports {root}"
        for path in files
        for line, root in imported_roots(path)
        if root in forbidden
    ]


def test_every_service_directory_is_known() -> None:
    found = {
        p.name
        for p in (ROOT / "services").iterdir()
        if p.is_dir() and any(p.glob("*/__main__.py"))  # a folder with a runnable package
    }
    assert found == set(SERVICE_PACKAGES)
    for directory, package in SERVICE_PACKAGES.items():
        assert (ROOT / "services" / directory / package / "__init__.py").is_file()


@pytest.mark.parametrize("directory", sorted(SERVICE_PACKAGES))
def test_no_service_imports_another(directory: str) -> None:
    own = SERVICE_PACKAGES[directory]
    files = sorted((ROOT / "services" / directory).rglob("*.py"))
    assert files
    others = set(SERVICE_PACKAGES.values()) - {own}
    assert violations(files, others) == []


def test_libs_import_no_service() -> None:
    files = sorted((ROOT / "libs").rglob("*.py"))
    assert files
    assert violations(files, set(SERVICE_PACKAGES.values())) == []


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    # Guards the guard: absolute imports are caught in both forms, relative ones are not.
    module = tmp_path / "probe.py"
    module.write_text(
        "import intake.app\nfrom results_sink.store import x\nfrom . import gateway\n"
        "def f():\n    import orchestrator\n",
        encoding="utf-8",
    )
    found = violations([module], set(SERVICE_PACKAGES.values()))
    assert [v.split(" imports ")[1] for v in found] == ["intake", "results_sink", "orchestrator"]
