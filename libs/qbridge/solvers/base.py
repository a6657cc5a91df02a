"""One solver interface, interchangeable implementations.

Quantum backends and OR-Tools all implement :class:`Solver`:
``solve(problem, budget) -> Outcome``. The orchestrator never special-cases a
route; it asks :meth:`Solver.eligibility` and calls :meth:`Solver.solve`.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

from qbridge.problems.base import Problem


class Route(enum.StrEnum):
    """Which kind of solver produced an outcome."""

    QUANTUM = "quantum"
    CLASSICAL = "classical"


@dataclass(frozen=True)
class Budget:
    """What a single solve may spend.

    Attributes:
        time_limit_s: Wall-clock limit for the whole solve; anytime solvers return
            their best-so-far when it runs out.
        shots: Total measurement shots a quantum solver may use (all circuits).
        seed: Seed for every random choice, so a replay gives the same answer.
        top_n: How many distinct candidates to report.
    """

    time_limit_s: float = 10.0
    shots: int = 4096
    seed: int = 0
    top_n: int = 5


@dataclass(frozen=True)
class Candidate:
    """One candidate solution, evaluated classically on the original problem.

    Attributes:
        assignment: Values of the problem's decision variables (slack bits dropped).
        objective: Original objective, recomputed classically.
        feasible: Whether all constraints hold.
        frequency: Share of samples that produced it (quantum), if sampled.
    """

    assignment: tuple[int, ...]
    objective: float
    feasible: bool
    frequency: float | None = None


@dataclass(frozen=True)
class Quality:
    """Signals about how good the best solution is.

    Attributes:
        proven_optimal: The solver proved optimality (CP-SAT OPTIMAL).
        bound: Best proven bound on the objective, in the original sense, if known.
        gap: Relative gap ``|objective - bound| / max(1, |bound|)``, if a bound is known.
        expected_objective: QAOA: expectation of the objective under the final state.
        confidence: 0..1; frequency of the best candidate for sampled solvers, 1.0 if proven.
    """

    proven_optimal: bool = False
    bound: float | None = None
    gap: float | None = None
    expected_objective: float | None = None
    confidence: float | None = None


@dataclass
class Timings:
    """Seconds spent per stage (queue time is filled in by the services)."""

    queue_s: float = 0.0
    transpile_s: float = 0.0
    execute_s: float = 0.0
    postprocess_s: float = 0.0


@dataclass
class Provenance:
    """Everything needed to explain and replay an outcome.

    Attributes:
        route: Quantum or classical.
        solver: Algorithm name (``qaoa``, ``cp-sat``...).
        backend: Backend name (``aer_statevector``, ``ortools``...).
        backend_version: The backend's own version string.
        sdk_versions: Package versions (``qiskit``, ``qiskit-aer``, ``ortools``...).
        settings: Solver/transpiler settings that influence the result.
        circuit_depth: Transpiled circuit depth (quantum only).
        circuit_width: Qubits used (quantum only).
        shots: Shots actually used.
        seed: Seed used.
        optimizer_iterations: Outer-loop iterations (QAOA) or search branches.
        timings: Per-stage timings.
        cache_hit: Transpile cache hit (quantum only).
        cost_units: Abstract cost charged to the tenant's budget.
    """

    route: Route
    solver: str
    backend: str
    backend_version: str = ""
    sdk_versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    circuit_depth: int | None = None
    circuit_width: int | None = None
    shots: int | None = None
    seed: int | None = None
    optimizer_iterations: int | None = None
    timings: Timings = field(default_factory=Timings)
    cache_hit: bool | None = None
    cost_units: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """The result of one solve.

    Attributes:
        best: The best candidate (feasible ones rank above infeasible ones).
        candidates: Top-N distinct candidates, best first (includes ``best``).
        quality: Quality signals.
        provenance: How it was produced.
    """

    best: Candidate
    candidates: tuple[Candidate, ...]
    quality: Quality
    provenance: Provenance

    @property
    def feasible(self) -> bool:
        """Whether the best candidate satisfies every constraint."""
        return self.best.feasible


@dataclass(frozen=True)
class Eligibility:
    """Whether a solver can take a problem, and why not."""

    eligible: bool
    reason: str = ""
    qubits: int | None = None


class Solver(abc.ABC):
    """The one solver contract."""

    name: str
    route: Route

    @abc.abstractmethod
    def eligibility(self, problem: Problem) -> Eligibility:
        """Decide, before submission, whether this solver can take ``problem``."""

    @abc.abstractmethod
    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        """Solve within ``budget``.

        Raises:
            NotEligibleError: The problem is not eligible (see :meth:`eligibility`).
            SolverError: A classified failure (transient, backend unavailable, over budget).
        """


def rank_candidates(
    problem: Problem, candidates: list[Candidate], top_n: int
) -> tuple[Candidate, ...]:
    """Deduplicate and sort candidates: feasible first, then by objective for the sense.

    Args:
        problem: Decides the sense (min/max).
        candidates: Evaluated candidates, possibly repeated.
        top_n: How many to keep.

    Returns:
        At most ``top_n`` distinct candidates, best first. Frequencies of repeated
        assignments are summed.
    """
    merged: dict[tuple[int, ...], Candidate] = {}
    for c in candidates:
        prev = merged.get(c.assignment)
        if prev is None:
            merged[c.assignment] = c
        elif c.frequency is not None or prev.frequency is not None:
            freq = (prev.frequency or 0.0) + (c.frequency or 0.0)
            merged[c.assignment] = Candidate(c.assignment, c.objective, c.feasible, freq)
    sign = -1.0 if problem.sense.value == "maximize" else 1.0
    ordered = sorted(
        merged.values(), key=lambda c: (not c.feasible, sign * c.objective, c.assignment)
    )
    return tuple(ordered[:top_n])
