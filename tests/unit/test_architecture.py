"""The shape of ``libs/qbridge``: imports point one way.

The import graph is read from the source with :mod:`ast` (nothing is imported):
every ``import`` and ``from ... import`` statement counts, at module level and
inside functions or methods alike (a deferred import is still a dependency;
deferring it only hides a cycle from the interpreter). Not counted:

* imports under ``if TYPE_CHECKING:`` (annotations only; none exist today);
* the implicit import of a module's parent packages by Python itself
  (``qbridge.solvers.quantum.aer`` runs ``qbridge/solvers/quantum/__init__.py``
  first); a package's ``__init__`` that re-exports its modules is a normal
  module in the graph with edges to them.

``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else
to ``pkg``.

Two rules:

1. No cycle between modules.
2. Layers, bottom to top; a unit (a top-level module or subpackage of
   ``qbridge``) imports only from its own unit or from units in lower layers:

   ====  ==========================================  =========================================
   0     ``errors``, ``topics``, ``metrics``         error classes, topic names, Prometheus
                                                     metric definitions; import no qbridge
   1     ``status``, ``problems``, ``db``            job-status vocabulary and degrade-reason
                                                     codes; the problem model; PostgreSQL
                                                     pool, error translation, migrations
   2     ``solvers``, ``results``                    the results read model (SQL over the
                                                     results-sink tables); the solver
                                                     interface, classical and
                                                     quantum solvers (``quantum.base`` below
                                                     its adapters, ``quantum.backends`` the
                                                     factory above them)
   3     ``contracts``, ``qml``                      Avro schemas, registry, codec, record
                                                     <-> domain conversions, gRPC stubs;
                                                     quantum-kernel classification solvers
   4     ``validation``                              request acceptance (intake + gateway)
   5     ``bus``, ``service``, ``samples``           Kafka edge; service runtime (settings,
                                                     logs, HTTP, lifecycle); sample requests
   6     ``executor``, ``dashboard``, ``cli``        the applications built from the above
   ====  ==========================================  =========================================

Units of one layer do not import each other. A new unit must be placed in a layer
here before it can land. Whether a service imports another service is checked
elsewhere.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBS = ROOT / "libs"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "topics", "metrics"}),
    frozenset({"status", "problems", "db"}),
    frozenset({"solvers", "results"}),
    frozenset({"contracts", "qml"}),
    frozenset({"validation"}),
    frozenset({"bus", "service", "samples"}),
    frozenset({"executor", "dashboard", "cli"}),
)
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}

Graph = dict[str, set[str]]


def module_names(base: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``base/package``."""
    names = {}
    for path in sorted((base / package).rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield from _imports_of(stmt)
            continue
        yield from _imports_of(child)


def _imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _imports(node)


def import_graph(base: Path, package: str) -> Graph:
    """Module -> the modules of ``package`` it imports (see the module docstring)."""
    modules = module_names(base, package)
    graph: Graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for stmt in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(stmt, ast.Import):
                candidates = [alias.name for alias in stmt.names]
            else:
                source = stmt.module or ""
                if stmt.level:
                    anchor = here.split(".")[: len(here.split(".")) - stmt.level + 1]
                    source = ".".join(anchor + ([source] if source else []))
                candidates = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in stmt.names
                ]
            for target in candidates:
                # ``import a.b.c`` depends on a.b.c; keep the longest known module name.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a closed path), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def unit(module: str) -> str:
    """The top-level unit of a ``qbridge`` module (``qbridge.solvers.quantum.aer`` -> solvers)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(LIBS, "qbridge")


def test_the_graph_sees_module_and_function_level_imports(graph: Graph) -> None:
    # A module-level import, a package re-export, and (in the test below) a deferred one.
    assert "qbridge.contracts.convert" in graph["qbridge.executor.worker"]
    assert "qbridge.solvers.quantum.base" in graph["qbridge.solvers.quantum"]
    assert {"qbridge.solvers.quantum.aer", "qbridge.solvers.quantum.faults"} <= graph[
        "qbridge.solvers.quantum.backends"
    ]
    assert sum(map(len, graph.values())) > 100


def test_the_checker_finds_cycles_through_deferred_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "base.py").write_text("def make():\n    from demo.sub import impl\n    return impl\n")
    (pkg / "sub" / "impl.py").write_text("from ..base import make\n")
    (pkg / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from demo import base\n"
    )
    demo = import_graph(tmp_path, "demo")
    assert demo["demo.base"] == {"demo.sub.impl"}
    assert demo["demo.sub.impl"] == {"demo.base"}
    assert demo["demo.typed"] == set()
    cycle = find_cycle(demo)
    assert cycle is not None and set(cycle) == {"demo.base", "demo.sub.impl"}


def test_no_import_cycles(graph: Graph) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_unit_has_a_layer(graph: Graph) -> None:
    units = {unit(m) for m in graph} - {""}
    assert units - LAYER_OF.keys() == set(), "place new units in LAYERS (see the docstring)"
    assert LAYER_OF.keys() - units == set(), "LAYERS names a unit that no longer exists"


def test_imports_point_down_the_layers(graph: Graph) -> None:
    upward = sorted(
        f"{source} -> {target} ({unit(source)}: layer {LAYER_OF.get(unit(source))}, "
        f"{unit(target)}: layer {LAYER_OF.get(unit(target))})"
        for source, targets in graph.items()
        for target in targets
        if unit(source) != unit(target)
        and LAYER_OF.get(unit(source), -1) <= LAYER_OF.get(unit(target), -1)
    )
    assert upward == []
