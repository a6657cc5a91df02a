"""The classical portfolio: one anytime solver for every problem type.

The one home of the platform's classical answers: the gateway's local answer, the
classical executor's solver and the orchestrator's last resort all call this module.
Per-type behaviour comes from the registry in :mod:`qbridge.solvers.strategy`:

1. an *instant* incumbent (greedy constructions or a C++ steepest descent, milliseconds);
2. for types whose entry says CP-SAT leads (small instances, knapsack, job shop): a
   short native-heuristic phase, then CP-SAT (:class:`~qbridge.solvers.classical.CpSatSolver`)
   on the exact model, hinted with the incumbent, for the time left;
3. otherwise native heuristics (:func:`qbridge.solvers.anneal.anneal_runs`: simulated
   annealing with reheats from the incumbent, in C++) for the whole budget, each run's
   answer repaired to feasibility by the type's entry.

The whole budget is used; the search stops early only on a proven optimum (CP-SAT
OPTIMAL, or an answer meeting a valid bound). Every improvement can be reported as it
happens (``emit``), so a caller with a deadline always holds the best answer so far.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from qbridge.errors import NotEligibleError
from qbridge.problems.base import Problem
from qbridge.solvers.anneal import (
    DWAVE_SAMPLERS_VERSION,
    AnnealSettings,
    BinaryModel,
    anneal_runs,
)
from qbridge.solvers.base import (
    Budget,
    Candidate,
    Eligibility,
    Outcome,
    Provenance,
    Quality,
    Route,
    Solver,
    Timings,
    rank_candidates,
)
from qbridge.solvers.classical import ORTOOLS_VERSION, CpSatSettings, CpSatSolver, simple_bound
from qbridge.solvers.strategy import TypeStrategy, strategy_for

logger = logging.getLogger(__name__)

SDK_VERSIONS = {
    "dwave-samplers": DWAVE_SAMPLERS_VERSION,
    "ortools": ORTOOLS_VERSION,
    "numpy": np.__version__,
}
BACKENDS = {"cp-sat": "ortools", "greedy": "qbridge", "repair": "qbridge"}
"""Backend of each member (the native heuristics are ``dwave-samplers``)."""
SA_MEMBERS = ("anneal", "reheat", "recombination")
"""Members reported as ``simulated-annealing`` (a recombination mixes annealed states)."""

Emit = Callable[[Outcome], None]


@dataclass(frozen=True)
class PortfolioSettings:
    """Settings of :class:`ClassicalPortfolio` (recorded in the provenance).

    Attributes:
        cpsat: CP-SAT settings (exact models).
        anneal: Native heuristic schedule.
        heuristic_share: Share of the budget of the heuristic phase before CP-SAT,
            where CP-SAT leads.
        heuristic_max_s: Cap of that phase (CP-SAT often proves small instances in
            milliseconds once hinted: a longer phase would only delay the proof).
        use_cpsat: Let CP-SAT lead where the type's entry says so (off: heuristics only,
            for types that have a model).
        reserve_s: Time kept for ranking and reporting after the last run.
    """

    cpsat: CpSatSettings = field(default_factory=CpSatSettings)
    anneal: AnnealSettings = field(default_factory=AnnealSettings)
    heuristic_share: float = 0.2
    heuristic_max_s: float = 0.05
    use_cpsat: bool = True
    reserve_s: float = 0.02


class _Incumbent:
    """Best candidates so far, and the member that found the best."""

    def __init__(self, problem: Problem, top_n: int, started: float) -> None:
        self.problem = problem
        self.top_n = max(1, top_n)
        self.started = started
        self.ranked: tuple[Candidate, ...] = ()
        self.member = "greedy"
        self.cpsat: Outcome | None = None
        self.log: list[dict[str, Any]] = []
        self.bound = simple_bound(problem)

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None

    def offer(self, member: str, assignments: Sequence[Sequence[int]]) -> bool:
        """Evaluate assignments; True when the best improved."""
        before = self.best
        found = []
        for a in assignments:
            ev = self.problem.evaluate(a)
            found.append(Candidate(tuple(int(v) for v in a), ev.objective, ev.feasible))
        self.ranked = rank_candidates(self.problem, [*self.ranked, *found], self.top_n)
        improved = before is None or _better(self.problem, self.ranked[0], before)
        if improved:
            self.member = member
        return improved

    def proven(self) -> bool:
        if self.cpsat is not None and self.cpsat.quality.proven_optimal:
            return True
        best = self.best
        return (
            best is not None
            and best.feasible
            and self.bound is not None
            and abs(best.objective - self.bound) <= 1e-9 * max(1.0, abs(self.bound))
        )

    def note(self, member: str, seconds: float, **extra: Any) -> None:
        best = self.best
        self.log.append(
            {
                "member": member,
                "at_s": round(time.monotonic() - self.started, 4),
                "seconds": round(seconds, 4),
                "best": best.objective if best is not None else None,
                **extra,
            }
        )


def _better(problem: Problem, a: Candidate, b: Candidate) -> bool:
    if a.feasible != b.feasible:
        return a.feasible
    return problem.is_better(a.objective, b.objective)


class ClassicalPortfolio(Solver):
    """Anytime classical portfolio behind the :class:`Solver` contract.

    Args:
        settings: Portfolio settings.
    """

    name = "classical-portfolio"
    route = Route.CLASSICAL

    def __init__(self, settings: PortfolioSettings | None = None) -> None:
        self.settings = settings or PortfolioSettings()
        self.cpsat = CpSatSolver(self.settings.cpsat)

    def eligibility(self, problem: Problem) -> Eligibility:
        """Every type with a registry entry or a QUBO encoding is eligible."""
        entry = strategy_for(problem)
        if entry.kind == "generic" and not problem.quantum_encodable:
            return Eligibility(False, f"no classical strategy for problem type {problem.kind!r}")
        return Eligibility(True)

    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        """Best answer found within ``budget.time_limit_s`` (see the module docstring).

        Raises:
            NotEligibleError: No strategy for the problem's type.
            SolverError: No candidate at all (CP-SAT found none and no heuristic applies).
        """
        return self.run(problem, budget)

    def run(self, problem: Problem, budget: Budget, emit: Emit | None = None) -> Outcome:
        """:meth:`solve`, reporting each improvement to ``emit`` as it happens.

        Args:
            problem: The problem.
            budget: Time limit, seed, top N.
            emit: Called with an :class:`Outcome` whenever the best answer improves
                (first with the instant answer); exceptions it raises propagate.

        Returns:
            The final outcome (the best answer, its quality and how it was found).
        """
        elig = self.eligibility(problem)
        if not elig.eligible:
            raise NotEligibleError(elig.reason)
        started = time.monotonic()
        deadline = started + max(0.0, budget.time_limit_s) - self.settings.reserve_s
        entry = strategy_for(problem)
        inc = _Incumbent(problem, budget.top_n, started)
        model = entry.model(problem) if entry.model is not None else None
        repaired = [entry.repair(problem, a) for a in entry.instant(problem, model)]
        inc.offer("greedy", repaired)
        inc.note("greedy", time.monotonic() - started)
        self._emit(emit, problem, budget, inc)
        exact = (
            entry.exact_first(problem)
            and (self.settings.use_cpsat or entry.model is None)
            and self.cpsat.eligibility(problem).eligible
        )
        if not inc.proven() and model is not None:
            st = self.settings
            seconds = max(0.0, deadline - started)
            if exact:
                seconds = min(st.heuristic_share * seconds, st.heuristic_max_s)
            until = (started + seconds, seconds)
            self._heuristics(entry, model, problem, budget, inc, until, emit)
        if exact and not inc.proven() and deadline - time.monotonic() > 0.005:
            self._exact(problem, budget, inc, deadline, emit)
        return self._outcome(problem, budget, inc)

    def _heuristics(
        self,
        entry: TypeStrategy,
        model: BinaryModel,
        problem: Problem,
        budget: Budget,
        inc: _Incumbent,
        until: tuple[float, float],
        emit: Emit | None,
    ) -> None:
        """Native runs until ``until = (monotonic deadline, seconds given)``."""
        # No start state: the instant answer already is a local optimum (or a repaired
        # greedy one); the anneals start fresh and reheat from their own best.
        deadline, seconds = until
        runs = anneal_runs(model, budget.seed, deadline, None, self.settings.anneal, seconds)
        for run in runs:
            improved = inc.offer(run.member, [entry.repair(problem, run.bits)])
            inc.note(run.member, run.seconds, sweeps=run.sweeps, energy=run.energy)
            if improved:
                self._emit(emit, problem, budget, inc)
            if inc.proven():
                return

    def _exact(
        self,
        problem: Problem,
        budget: Budget,
        inc: _Incumbent,
        deadline: float,
        emit: Emit | None,
    ) -> None:
        t = time.monotonic()
        starts = [c.assignment for c in inc.ranked if c.feasible]
        left = Budget(
            time_limit_s=max(0.0, deadline - t),
            shots=budget.shots,
            seed=budget.seed,
            top_n=budget.top_n,
        )
        out = self.cpsat.solve_from(problem, left, starts or None)
        inc.cpsat = out
        improved = inc.offer("cp-sat", [c.assignment for c in out.candidates])
        if out.quality.proven_optimal:
            inc.member = "cp-sat"  # whoever found it first, the proof is CP-SAT's
        inc.note("cp-sat", time.monotonic() - t, status=out.provenance.settings.get("status"))
        # A proof is news even when the answer is unchanged (callers may stop waiting).
        if improved or out.quality.proven_optimal:
            self._emit(emit, problem, budget, inc)

    def _emit(self, emit: Emit | None, problem: Problem, budget: Budget, inc: _Incumbent) -> None:
        if emit is not None and inc.best is not None:
            emit(self._outcome(problem, budget, inc))

    def _outcome(self, problem: Problem, budget: Budget, inc: _Incumbent) -> Outcome:
        best = inc.best
        if best is None:
            raise NotEligibleError(f"no candidate answer for a {problem.kind} problem")
        quality = _quality(problem, inc, best)
        elapsed = time.monotonic() - inc.started
        provenance = Provenance(
            route=self.route,
            solver=("simulated-annealing" if inc.member in SA_MEMBERS else inc.member),
            backend=BACKENDS.get(inc.member, "dwave-samplers"),
            backend_version=(ORTOOLS_VERSION if inc.member == "cp-sat" else DWAVE_SAMPLERS_VERSION),
            sdk_versions=dict(SDK_VERSIONS),
            settings={
                **(inc.cpsat.provenance.settings if inc.cpsat is not None else {}),
                "portfolio": self.name,
                "strategy": strategy_for(problem).kind,
                "runs": inc.log,
                "anneal": asdict(self.settings.anneal),
                "heuristic_share": self.settings.heuristic_share,
                "heuristic_max_s": self.settings.heuristic_max_s,
            },
            seed=budget.seed,
            optimizer_iterations=len(inc.log),
            timings=Timings(execute_s=elapsed),
            cost_units=elapsed,
        )
        return Outcome(best=best, candidates=inc.ranked, quality=quality, provenance=provenance)


def _quality(problem: Problem, inc: _Incumbent, best: Candidate) -> Quality:
    bound = inc.bound
    proven = inc.proven()
    if inc.cpsat is not None and inc.cpsat.quality.bound is not None:
        cb = inc.cpsat.quality.bound
        # The tighter of the two valid bounds.
        bound = cb if bound is None or problem.is_better(bound, cb) else bound
    gap = None
    if bound is not None and best.feasible:
        gap = abs(best.objective - bound) / max(1.0, abs(bound))
    return Quality(
        proven_optimal=proven and best.feasible,
        bound=bound,
        gap=gap,
        confidence=1.0 if proven and best.feasible else None,
    )


def instant_outcome(problem: Problem, seed: int) -> Outcome | None:
    """A feasible answer in milliseconds (None if none was found or it failed).

    The registry entry's constructions, repaired; never raises (this answer is the
    hedge of last resort, a defect is logged).
    """
    started = time.monotonic()
    try:
        entry = strategy_for(problem)
        inc = _Incumbent(problem, 1, started)
        inc.offer("greedy", [entry.repair(problem, a) for a in entry.instant(problem, None)])
    except Exception:
        logger.exception("instant answer failed on a %s problem", problem.kind)
        return None
    best = inc.best
    if best is None or not best.feasible:
        return None
    return Outcome(
        best=best,
        candidates=(best,),
        quality=Quality(),
        provenance=Provenance(
            route=Route.CLASSICAL,
            solver="greedy",
            backend="qbridge",
            seed=seed,
            timings=Timings(execute_s=time.monotonic() - started),
        ),
    )


def better(problem: Problem, a: Outcome | None, b: Outcome | None) -> Outcome | None:
    """The better of two outcomes: feasible first, then by objective.

    Ties go to ``b`` (pass the richer answer second).
    """
    if a is None:
        return b
    if b is None:
        return a
    return a if _better(problem, a.best, b.best) else b
