"""Which solver takes a classical work item (no Kafka here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qbridge.errors import BackendUnavailableError
from qbridge.qml.solvers import KernelBaselineSolver
from qbridge.solvers.base import Solver
from qbridge.solvers.classical import CpSatSettings
from qbridge.solvers.portfolio import ClassicalPortfolio, PortfolioSettings


class ClassicalSolvers:
    """One classical portfolio per process, for the backends this executor serves.

    The portfolio (:mod:`qbridge.solvers.portfolio`) is the same module the gateway and
    the orchestrator answer with: native heuristics for large QUBO-family problems,
    CP-SAT where it proves optimality.

    Args:
        backends: Accepted values of the work item's ``backend`` field.
        settings: CP-SAT settings of the portfolio's exact member.
    """

    def __init__(self, backends: Iterable[str], settings: CpSatSettings | None = None) -> None:
        self.backends = frozenset(backends)
        self.solver: Solver = ClassicalPortfolio(
            PortfolioSettings(cpsat=settings or CpSatSettings())
        )
        self.classifier: Solver = KernelBaselineSolver()

    def prewarm(self, backends: Iterable[str]) -> None:
        """Nothing to build ahead: models are made per problem."""

    def for_item(self, item: Mapping[str, Any]) -> Solver:
        """The solver of ``item``.

        Raises:
            BackendUnavailableError: The item asks for a backend this executor lacks.
        """
        backend = item.get("backend") or ""
        if backend not in self.backends:
            raise BackendUnavailableError(
                f"classical backend {backend!r} is not served here "
                f"(available: {', '.join(sorted(self.backends))})"
            )
        if item.get("problem_type") == KernelBaselineSolver.problem_type:
            return self.classifier
        return self.solver
