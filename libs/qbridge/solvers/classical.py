"""The classical route: exact CP-SAT models of the original problems, with a warm start.

Every problem type gets a CP-SAT model of the *original* problem (constraints
as constraints, never penalties). The solve is anytime: it returns the best
feasible solution found within ``budget.time_limit_s``, the proven bound and
gap, and ``proven_optimal`` when CP-SAT reports OPTIMAL.

Precision. CP-SAT only takes integer coefficients. Objective coefficients
that all become integers (up to ``2**40``) when multiplied by ``10**d`` for some
``d <= 6`` are scaled by that power of ten: the model is then exact (up to float
representation, ~1e-9 relative). Otherwise they are multiplied by
``resolution / max|c|`` and rounded, i.e. each coefficient is kept to a
relative precision of ``1 / resolution`` (default ``1e-6``) of the largest
one. The total rounding error ``E`` (sum of per-term errors) is known exactly;
the reported bound is widened by ``E`` so it remains a valid bound for the
original floats, and reported objectives are always recomputed with
``problem.evaluate`` on the original data. When CP-SAT has no bound yet, a
cheap valid bound (sum of positive weights, LP relaxation...) is reported.

Determinism. With the default single worker, a seeded solve is a deterministic
function of (problem, seed, settings, OR-Tools version) whenever it stops by
proving optimality or by the deterministic-time limit
(``max_deterministic_time`` / ``deterministic_time_per_s``). A solve cut by the wall-clock limit
returns the best solution found so far, which depends on machine speed and load;
``settings["stopped_by"]`` in the provenance says which limit applied. With
``num_workers > 1`` the parallel portfolio is not deterministic unless
``interleave_search`` is set. The warm start is iteration-bounded, hence
deterministic unless its deadline cuts it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from qbridge.errors import NotEligibleError, SolverError
from qbridge.problems.base import Problem, QuboEncoding, Sense
from qbridge.problems.knapsack import Knapsack
from qbridge.problems.maxcut import MaxCut
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.qubo import Qubo
from qbridge.problems.qubo_problem import IsingProblem, QuboProblem
from qbridge.problems.scheduling import JobShop
from qbridge.solvers import heuristics
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

logger = logging.getLogger(__name__)

ORTOOLS_VERSION = metadata.version("ortools")

EXACT_INTEGER_LIMIT = 2**40
"""Largest integer coefficient of an exact (power-of-ten scaled) objective."""
_MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class CpSatSettings:
    """Settings of :class:`CpSatSolver` (all recorded in the provenance).

    Attributes:
        num_workers: CP-SAT search workers. 1 (default) is deterministic and, with
            ``linearization_level=2``, was as strong as 8 workers on 2 cores for MaxCut.
        linearization_level: CP-SAT LP strength; 2 adds the cuts that close MaxCut gaps.
        interleave_search: Deterministic multi-worker search (slower per worker).
        resolution: Float objectives are scaled so the largest coefficient becomes
            ``resolution`` (relative precision ``1 / resolution``).
        max_deterministic_time: Optional deterministic-time limit (reproducible
            stopping point); the wall-clock budget still applies on top.
        deterministic_time_per_s: Optional deterministic-time limit per second of
            ``budget.time_limit_s`` (computed from the budget, not from the clock,
            so a replay gets the same limit). On the reference 2-core machine
            CP-SAT did 0.3-1.8 deterministic units per wall second, so values
            below ~0.15 usually make this limit, not the wall clock, end the search.
        warm_start: Run the heuristic warm start (also the answer of last resort).
        warm_start_share: Maximum share of the time budget for the warm start.
        tabu_iterations_per_s: Tabu moves of the QUBO warm start per second of its
            share of the budget (capped at ``50 n``); sized so that the moves fit
            the share on the reference machine, keeping the warm start reproducible.
        max_triangles: Triangle inequalities added to MaxCut models (strengthens
            the LP; capped because dense graphs have O(n^3) triangles).
        triangles_per_s: Further cap on triangles per second of time budget, so
            model building stays a small share of short budgets.
        max_variables: Eligibility limit on the problem's decision variables.
        max_quadratic_terms: Eligibility limit on product variables of a model.
        reserve_s: Time kept for evaluating and ranking candidates after the search.
    """

    num_workers: int = 1
    linearization_level: int = 2
    interleave_search: bool = False
    resolution: float = 1e6
    max_deterministic_time: float | None = None
    deterministic_time_per_s: float | None = None
    warm_start: bool = True
    warm_start_share: float = 0.25
    tabu_iterations_per_s: float = 20_000.0
    max_triangles: int = 20_000
    triangles_per_s: float = 2_000.0
    max_variables: int = 100_000
    max_quadratic_terms: int = 2_000_000
    reserve_s: float = 0.05


@dataclass(frozen=True)
class Scaling:
    """How a float objective became an integer one.

    ``objective ~= integer_objective / factor + offset`` with an absolute error of
    at most ``max_error`` for every assignment.
    """

    factor: float
    offset: float
    max_error: float

    @property
    def exact(self) -> bool:
        """True when the integer model is exact."""
        return self.max_error == 0.0


class _Objective:
    """Collects float objective terms, then sets a scaled integer objective."""

    def __init__(self) -> None:
        self.terms: list[tuple[cp_model.IntVar, float]] = []
        self.offset = 0.0

    def add(self, var: cp_model.IntVar, coef: float) -> None:
        if coef != 0.0:
            self.terms.append((var, coef))

    def apply(self, model: cp_model.CpModel, sense: Sense, resolution: float) -> Scaling:
        coefs = [c for _, c in self.terms]
        max_abs = max((abs(c) for c in coefs), default=0.0)
        factor = _decimal_factor(coefs, max_abs) or (resolution / max_abs if max_abs else 1.0)
        ints = [round(c * factor) for c in coefs]
        # Each term is a 0/1 variable, so its error is at most |c - round(c f) / f|.
        error = math.fsum(abs(c - i / factor) for c, i in zip(coefs, ints, strict=True))
        expr = (
            cp_model.LinearExpr.weighted_sum([v for v, _ in self.terms], ints) if self.terms else 0
        )
        if sense is Sense.MAXIMIZE:
            model.maximize(expr)
        else:
            model.minimize(expr)
        return Scaling(factor=factor, offset=self.offset, max_error=error)


def _decimal_factor(coefs: Sequence[float], max_abs: float) -> float | None:
    """``10**d`` (``d <= 6``) making every coefficient an integer, if one exists.

    Data given with few decimals (prices, weights like ``6.5``) then gets an
    exact integer model instead of a rounded one.
    """
    for d in range(7):
        f = 10.0**d
        if max_abs * f > EXACT_INTEGER_LIMIT:
            return None
        if all(abs(c * f - round(c * f)) <= 1e-9 * max(1.0, abs(c * f)) for c in coefs):
            return f
    return None


@dataclass
class _Model:
    """A built CP-SAT model and how to map it back to the problem."""

    model: cp_model.CpModel
    variables: list[cp_model.IntVar]
    scaling: Scaling
    decode: Callable[[list[int]], tuple[int, ...]]
    hint: Callable[[Sequence[int]], None]
    bound_in_original_sense: bool = True
    """False when the model optimizes a penalized QUBO (generic encodable types)."""
    info: dict[str, Any] = field(default_factory=dict)


def _bool_vars(model: cp_model.CpModel, n: int, prefix: str = "x") -> list[cp_model.IntVar]:
    return [model.new_bool_var(f"{prefix}{i}") for i in range(n)]


def _identity(values: list[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _add_products(
    model: cp_model.CpModel,
    x: list[cp_model.IntVar],
    quad: dict[tuple[int, int], float],
    *,
    exact: bool,
) -> dict[tuple[int, int], cp_model.IntVar]:
    """Linearize ``z_ij = x_i x_j``.

    When ``exact`` is False only the side the objective pushes against is
    constrained (``z >= x_i + x_j - 1`` for positive minimized coefficients,
    ``z <= x_i, z <= x_j`` for negative ones): an optimum always sits at the
    product, and the model is smaller.
    """
    z: dict[tuple[int, int], cp_model.IntVar] = {}
    for (i, j), q in quad.items():
        v = model.new_bool_var(f"z{i}_{j}")
        z[(i, j)] = v
        if exact or q > 0:
            model.add(v >= x[i] + x[j] - 1)
        if exact or q < 0:
            model.add(v <= x[i])
            model.add(v <= x[j])
    return z


def _qubo_model(
    qubo: Qubo, settings: CpSatSettings, decode: Callable[[list[int]], tuple[int, ...]]
) -> _Model:
    model = cp_model.CpModel()
    x = _bool_vars(model, qubo.num_variables)
    z = _add_products(model, x, dict(qubo.quadratic), exact=False)
    obj = _Objective()
    obj.offset = qubo.offset
    for i, c in enumerate(qubo.linear):
        obj.add(x[i], c)
    for key, c in qubo.quadratic.items():
        obj.add(z[key], c)
    scaling = obj.apply(model, Sense.MINIMIZE, settings.resolution)

    def hint(bits: Sequence[int]) -> None:
        for i, v in enumerate(bits[: len(x)]):
            model.add_hint(x[i], int(v))
        if len(bits) >= len(x):
            for (i, j), var in z.items():
                model.add_hint(var, int(bits[i]) * int(bits[j]))

    return _Model(model, x, scaling, decode, hint, info={"products": len(z)})


def _triangles(
    edges: Sequence[tuple[int, int, float]], n: int, cap: int
) -> list[tuple[int, int, int]]:
    """Triangles ``i < j < k`` of the graph, in lexicographic order, at most ``cap``."""
    adj: list[set[int]] = [set() for _ in range(n)]
    for i, j, _ in edges:
        adj[i].add(j)
        adj[j].add(i)
    out: list[tuple[int, int, int]] = []
    for i, j, _ in edges:
        for k in sorted(adj[i] & adj[j]):
            if k > j:
                out.append((i, j, k))
                if len(out) >= cap:
                    return out
    return out


def _maxcut_model(problem: MaxCut, settings: CpSatSettings, max_triangles: int) -> _Model:
    model = cp_model.CpModel()
    n = problem.num_nodes
    x = _bool_vars(model, n)
    # Complementing every bit keeps the cut: fix node 0's side to halve the search.
    model.add(x[0] == 0)
    y: dict[tuple[int, int], cp_model.IntVar] = {}
    obj = _Objective()
    for i, j, w in problem.edges:
        v = model.new_bool_var(f"y{i}_{j}")
        y[(i, j)] = v
        # y is "edge cut"; only the side the objective pushes against is needed.
        if w > 0:
            model.add(v <= x[i] + x[j])
            model.add(v <= 2 - x[i] - x[j])
        else:
            model.add(v >= x[i] - x[j])
            model.add(v >= x[j] - x[i])
        obj.add(v, w)
    tris = _triangles(problem.edges, n, max_triangles) if max_triangles > 0 else []
    for i, j, k in tris:
        # Cut metric inequalities: valid for y = XOR(x), which every optimum can take.
        a, b, c = y[(i, j)], y[(i, k)], y[(j, k)]
        model.add(a + b + c <= 2)
        model.add(a <= b + c)
        model.add(b <= a + c)
        model.add(c <= a + b)
    scaling = obj.apply(model, Sense.MAXIMIZE, settings.resolution)

    def hint(bits: Sequence[int]) -> None:
        flip = int(bits[0])
        xs = [int(b) ^ flip for b in bits]
        for i, v in enumerate(xs):
            model.add_hint(x[i], v)
        for (i, j), var in y.items():
            model.add_hint(var, xs[i] ^ xs[j])

    return _Model(model, x, scaling, _identity, hint, info={"triangles": len(tris)})


def _knapsack_model(problem: Knapsack, settings: CpSatSettings) -> _Model:
    model = cp_model.CpModel()
    x = _bool_vars(model, problem.num_variables)
    model.add(cp_model.LinearExpr.weighted_sum(x, list(problem.weights)) <= problem.capacity)
    obj = _Objective()
    for var, v in zip(x, problem.values, strict=True):
        obj.add(var, v)
    scaling = obj.apply(model, Sense.MAXIMIZE, settings.resolution)

    def hint(bits: Sequence[int]) -> None:
        for var, b in zip(x, bits, strict=True):
            model.add_hint(var, int(b))

    return _Model(model, x, scaling, _identity, hint)


def _portfolio_model(problem: Portfolio, settings: CpSatSettings) -> _Model:
    model = cp_model.CpModel()
    n = problem.num_variables
    k = problem.budget
    x = _bool_vars(model, n)
    model.add(sum(x) == k)
    linear, quad = problem.objective_terms()
    z = _add_products(model, x, quad, exact=True)
    # RLT cuts from multiplying sum x = k by x_i: sum_{j != i} z_ij = (k - 1) x_i.
    # Valid because z is the exact product here; they tighten the LP a lot.
    if len(z) == n * (n - 1) // 2:
        for i in range(n):
            row = [z[(min(i, j), max(i, j))] for j in range(n) if j != i]
            model.add(sum(row) == (k - 1) * x[i])
    obj = _Objective()
    for i, c in enumerate(linear):
        obj.add(x[i], c)
    for key, c in quad.items():
        obj.add(z[key], c)
    scaling = obj.apply(model, Sense.MINIMIZE, settings.resolution)

    def hint(bits: Sequence[int]) -> None:
        for i, b in enumerate(bits):
            model.add_hint(x[i], int(b))
        for (i, j), var in z.items():
            model.add_hint(var, int(bits[i]) * int(bits[j]))

    return _Model(model, x, scaling, _identity, hint, info={"products": len(z)})


def _jobshop_model(problem: JobShop, settings: CpSatSettings) -> _Model:
    model = cp_model.CpModel()
    horizon = problem.horizon
    starts: list[cp_model.IntVar] = []
    ends: list[cp_model.IntVar] = []
    per_machine: dict[int, list[cp_model.IntervalVar]] = {}
    last_ends: list[cp_model.IntVar] = []
    for j, k, op in problem.operations():
        s = model.new_int_var(0, horizon - op.duration, f"s{j}_{k}")
        e = model.new_int_var(op.duration, horizon, f"e{j}_{k}")
        interval = model.new_interval_var(s, op.duration, e, f"op{j}_{k}")
        per_machine.setdefault(op.machine, []).append(interval)
        if k > 0:
            model.add(s >= ends[-1])
        if k == len(problem.jobs[j]) - 1:
            last_ends.append(e)
        starts.append(s)
        ends.append(e)
    for intervals in per_machine.values():
        model.add_no_overlap(intervals)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, last_ends)
    model.minimize(makespan)
    durations = [op.duration for _, _, op in problem.operations()]

    def hint(values: Sequence[int]) -> None:
        for var, end, v, d in zip(starts, ends, values, durations, strict=True):
            model.add_hint(var, int(v))
            model.add_hint(end, int(v) + d)
        model.add_hint(makespan, max(int(v) + d for v, d in zip(values, durations, strict=True)))

    return _Model(model, starts, Scaling(1.0, 0.0, 0.0), _identity, hint)


_WarmPool = list[tuple[tuple[int, ...], tuple[int, ...]]]
"""Warm-start solutions best first, as ``(assignment, bits to hint the model with)``."""


def _maxcut_build(problem: Problem, settings: CpSatSettings, time_limit_s: float) -> _Model:
    assert isinstance(problem, MaxCut)
    # Building the inequalities costs ~20 us each: keep them in proportion to the
    # budget (from the budget, not the clock, so the model is reproducible).
    cap = min(settings.max_triangles, int(settings.triangles_per_s * time_limit_s))
    return _maxcut_model(problem, settings, cap)


def _qubo_build(problem: Problem, settings: CpSatSettings, _time_limit_s: float) -> _Model:
    # Ising goes through its exact QUBO substitution (same energies).
    return _qubo_model(problem.to_qubo().qubo, settings, _identity)


def _penalized_build(problem: Problem, settings: CpSatSettings, _time_limit_s: float) -> _Model:
    # Any other quantum-encodable type: solve its penalized QUBO, decode, re-evaluate.
    enc = problem.to_qubo()
    built = _qubo_model(enc.qubo, settings, lambda v: enc.decode(v))
    built.bound_in_original_sense = False
    return built


def _qubo_warm_start(
    problem: Problem, budget: Budget, settings: CpSatSettings, deadline: float
) -> _WarmPool:
    enc: QuboEncoding = problem.to_qubo()
    n = enc.qubo.num_variables
    # Iterations follow from the budget (not the clock) so that the warm start
    # is reproducible; the deadline only guards against a slow machine.
    share_s = settings.warm_start_share * max(0.0, budget.time_limit_s)
    tabu = min(max(1000, 50 * n), int(settings.tabu_iterations_per_s * share_s))
    res = heuristics.qubo_local_search(
        enc.qubo,
        seed=budget.seed,
        pool_size=max(budget.top_n, 1),
        tabu_iterations=max(tabu, 100),
        deadline=deadline,
    )
    # Slack bits (if any) are dropped from the assignment but kept for the hint.
    return [(enc.decode(bits), bits) for bits, _ in res.solutions]


def _greedy_warm_start(
    greedy: Callable[[Any, int], heuristics.HeuristicResult],
) -> Callable[[Problem, Budget, CpSatSettings, float], _WarmPool]:
    def warm(
        problem: Problem, budget: Budget, _settings: CpSatSettings, _deadline: float
    ) -> _WarmPool:
        return [(a, a) for a, _ in greedy(problem, budget.top_n).solutions]

    return warm


class _Collector(cp_model.CpSolverSolutionCallback):
    """Records every improving solution CP-SAT reports (bounded)."""

    def __init__(self, variables: list[cp_model.IntVar], keep: int) -> None:
        super().__init__()
        self._variables = variables
        self._keep = keep
        self.solutions: list[list[int]] = []
        self.count = 0

    def on_solution_callback(self) -> None:
        self.count += 1
        self.solutions.append([int(self.value(v)) for v in self._variables])
        if len(self.solutions) > self._keep:
            del self.solutions[0]


class CpSatSolver(Solver):
    """Exact CP-SAT models of every problem type, anytime within the budget.

    Args:
        settings: Search settings; defaults favour determinism (one worker).
    """

    name = "cp-sat"
    route = Route.CLASSICAL
    backend = "ortools"

    def __init__(self, settings: CpSatSettings | None = None) -> None:
        self.settings = settings or CpSatSettings()

    def eligibility(self, problem: Problem) -> Eligibility:
        """Every built-in type is eligible up to the size limits of the settings."""
        if problem.kind not in _TYPES and not problem.quantum_encodable:
            return Eligibility(False, f"no CP-SAT model for problem type {problem.kind!r}")
        n = problem.num_variables
        if n > self.settings.max_variables:
            return Eligibility(
                False, f"{n} variables exceed the CP-SAT limit {self.settings.max_variables}"
            )
        terms = _cpsat_type(problem).quadratic_terms(problem)
        if terms > self.settings.max_quadratic_terms:
            return Eligibility(
                False,
                f"{terms} quadratic terms exceed the CP-SAT limit "
                f"{self.settings.max_quadratic_terms}",
            )
        return Eligibility(True)

    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        """Warm start, then CP-SAT with the warm start as hint; best feasible found wins.

        Raises:
            NotEligibleError: The problem is too large or of an unsupported type.
            SolverError: CP-SAT rejected the model (a defect).
        """
        return self.solve_from(problem, budget, None)

    def solve_from(
        self, problem: Problem, budget: Budget, starts: Sequence[tuple[int, ...]] | None
    ) -> Outcome:
        """Like :meth:`solve`, with given starting assignments instead of the warm start.

        Args:
            problem: The problem.
            budget: Time limit (all of it for the search), seed, top N.
            starts: Assignments of the problem, best first: the first is the hint and
                all are candidates. None runs the built-in warm start.

        Raises:
            NotEligibleError: The problem is too large or of an unsupported type.
            SolverError: CP-SAT rejected the model (a defect).
        """
        elig = self.eligibility(problem)
        if not elig.eligible:
            raise NotEligibleError(elig.reason)
        st = self.settings
        t0 = time.monotonic()
        limit = max(0.0, budget.time_limit_s)
        deadline = t0 + limit
        pool: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        if starts is not None:
            pool = [(tuple(a), tuple(a)) for a in starts]
        elif st.warm_start:
            pool = _cpsat_type(problem).warm_start(
                problem, budget, st, t0 + st.warm_start_share * limit
            )
        t_warm = time.monotonic()
        built = _cpsat_type(problem).build(problem, st, limit)
        if pool:
            built.hint(pool[0][1])
        t_search = time.monotonic()
        search = _search(built, st, budget, deadline - t_search - st.reserve_s, bool(pool))
        t_exec = time.monotonic()
        outcome = self._outcome(problem, budget, built, search, pool)
        t_post = time.monotonic()
        wall = t_post - t0
        outcome.provenance.settings.update(
            {
                "status": search.status_name,
                "stopped_by": search.stopped_by,
                "scale_factor": built.scaling.factor,
                "scale_max_error": built.scaling.max_error,
                "warm_start_s": round(t_warm - t0, 6),
                "build_s": round(t_search - t_warm, 6),
                "search_s": round(t_exec - t_search, 6),
                "deterministic_time": search.deterministic_time,
                "solutions_found": search.solutions_found,
                **built.info,
            }
        )
        outcome.provenance.timings.execute_s = t_exec - t0
        outcome.provenance.timings.postprocess_s = t_post - t_exec
        outcome.provenance.cost_units = wall * st.num_workers
        logger.debug(
            "cp-sat %s: %s (%s) in %.3fs, best %s",
            problem.kind,
            search.status_name,
            search.stopped_by,
            wall,
            outcome.best.objective,
        )
        return outcome

    def _outcome(
        self,
        problem: Problem,
        budget: Budget,
        built: _Model,
        search: _Search,
        pool: list[tuple[tuple[int, ...], tuple[int, ...]]],
    ) -> Outcome:
        found = [built.decode(v) for v in search.solutions]
        # Newest CP-SAT solutions first: on ties the later (better-or-equal) one is kept.
        assignments = list(dict.fromkeys([*reversed(found), *(a for a, _ in pool)]))
        candidates = []
        for a in assignments:
            ev = problem.evaluate(a)
            candidates.append(Candidate(a, ev.objective, ev.feasible))
        if not candidates:
            raise SolverError(f"no solution for {problem.kind} (status {search.status_name})")
        ranked = rank_candidates(problem, candidates, max(1, budget.top_n))
        quality = _quality(problem, built, search, ranked[0])
        provenance = Provenance(
            route=self.route,
            solver=self.name,
            backend=self.backend,
            backend_version=ORTOOLS_VERSION,
            sdk_versions={"ortools": ORTOOLS_VERSION, "numpy": np.__version__},
            settings=asdict(self.settings),
            seed=budget.seed,
            optimizer_iterations=search.branches,
            timings=Timings(),
        )
        return Outcome(best=ranked[0], candidates=ranked, quality=quality, provenance=provenance)


@dataclass(frozen=True)
class _Search:
    """What one CP-SAT run produced (or an empty record if there was no time to run)."""

    status: cp_model.CpSolverStatus
    status_name: str
    solutions: list[list[int]]
    solutions_found: int
    scaled_bound: float | None
    deterministic_time: float
    branches: int
    stopped_by: str


def _search(
    built: _Model, st: CpSatSettings, budget: Budget, search_time: float, have_warm_start: bool
) -> _Search:
    if search_time <= 0.005 and have_warm_start:
        return _Search(cp_model.UNKNOWN, "NOT_RUN", [], 0, None, 0.0, 0, "no_time")
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = st.num_workers
    params.linearization_level = st.linearization_level
    params.interleave_search = st.interleave_search
    params.random_seed = budget.seed % _MAX_SEED
    params.catch_sigint_signal = False  # the services own signal handling
    det_limit = _deterministic_limit(st, budget.time_limit_s)
    if det_limit is not None:
        params.max_deterministic_time = det_limit
    # Without a warm start CP-SAT must run, however short the budget.
    params.max_time_in_seconds = max(search_time, 0.005)
    collector = _Collector(built.variables, keep=max(20, 4 * budget.top_n))
    status = solver.solve(built.model, collector)
    if status == cp_model.MODEL_INVALID:
        raise SolverError(f"CP-SAT rejected the model: {built.model.validate()}")
    response = solver.response_proto
    det = float(response.deterministic_time)
    if status in (cp_model.OPTIMAL, cp_model.INFEASIBLE):
        stopped_by = "proof"
    elif det_limit is not None and det >= 0.99 * det_limit:
        stopped_by = "deterministic_time"
    else:
        stopped_by = "wall_time"
    # CP-SAT reports a meaningless bound (0) until it has a solution.
    has_bound = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    return _Search(
        status=status,
        status_name=solver.status_name(status),
        solutions=collector.solutions,
        solutions_found=collector.count,
        scaled_bound=float(solver.best_objective_bound) if has_bound else None,
        deterministic_time=det,
        branches=int(response.num_branches),
        stopped_by=stopped_by,
    )


def _maxcut_bound(problem: Problem) -> float | None:
    assert isinstance(problem, MaxCut)
    return float(sum(max(w, 0.0) for _, _, w in problem.edges))


def _knapsack_bound(problem: Problem) -> float | None:
    assert isinstance(problem, Knapsack)
    # Dantzig's LP relaxation: fill by value density, take a fraction of the next item.
    room = float(problem.capacity)
    total = 0.0
    order = sorted(
        range(problem.num_variables),
        key=lambda i: (-problem.values[i] / problem.weights[i], i),
    )
    for i in order:
        w = problem.weights[i]
        if w <= room:
            total += problem.values[i]
            room -= w
        else:
            total += problem.values[i] * room / w
            break
    return total


def _qubo_bound(problem: Problem) -> float | None:
    q = problem.to_qubo().qubo
    return q.offset + sum(min(v, 0.0) for v in (*q.linear, *q.quadratic.values()))


def _portfolio_bound(problem: Problem) -> float | None:
    assert isinstance(problem, Portfolio)
    linear, quad = problem.objective_terms()
    return float(sum(min(v, 0.0) for v in (*linear, *quad.values())))


def _jobshop_bound(problem: Problem) -> float | None:
    assert isinstance(problem, JobShop)
    loads: dict[int, int] = {}
    for job in problem.jobs:
        for op in job:
            loads[op.machine] = loads.get(op.machine, 0) + op.duration
    longest_job = max(sum(op.duration for op in job) for job in problem.jobs)
    return float(max(longest_job, *loads.values()))


def _no_bound(_problem: Problem) -> float | None:
    return None


def _no_terms(_problem: Problem) -> int:
    return 0


def _portfolio_terms(problem: Problem) -> int:
    return problem.num_variables * (problem.num_variables - 1) // 2


def _qubo_terms(problem: Problem) -> int:
    assert isinstance(problem, QuboProblem)
    return len(problem.qubo.quadratic)


def _ising_terms(problem: Problem) -> int:
    assert isinstance(problem, IsingProblem)
    return len(problem.couplings)


def _maxcut_terms(problem: Problem) -> int:
    assert isinstance(problem, MaxCut)
    return len(problem.edges)


@dataclass(frozen=True)
class _CpSatType:
    """How CP-SAT treats one problem type (one entry per type instead of isinstance chains).

    Attributes:
        build: The CP-SAT model for a time limit.
        warm_start: Heuristic solutions that hint the model.
        bound: A cheap valid bound on the objective, or None.
        quadratic_terms: Product variables the model would need (eligibility).
    """

    build: Callable[[Problem, CpSatSettings, float], _Model]
    warm_start: Callable[[Problem, Budget, CpSatSettings, float], _WarmPool]
    bound: Callable[[Problem], float | None]
    quadratic_terms: Callable[[Problem], int]


_TYPES: dict[str, _CpSatType] = {
    "maxcut": _CpSatType(_maxcut_build, _qubo_warm_start, _maxcut_bound, _maxcut_terms),
    "qubo": _CpSatType(_qubo_build, _qubo_warm_start, _qubo_bound, _qubo_terms),
    "ising": _CpSatType(_qubo_build, _qubo_warm_start, _qubo_bound, _ising_terms),
    "knapsack": _CpSatType(
        lambda p, s, _t: _knapsack_model(p, s),  # type: ignore[arg-type]
        _greedy_warm_start(lambda p, n: heuristics.knapsack_greedy(p, pool_size=n)),
        _knapsack_bound,
        _no_terms,
    ),
    "portfolio": _CpSatType(
        lambda p, s, _t: _portfolio_model(p, s),  # type: ignore[arg-type]
        _greedy_warm_start(lambda p, n: heuristics.portfolio_greedy(p, pool_size=n)),
        _portfolio_bound,
        _portfolio_terms,
    ),
    "jobshop": _CpSatType(
        lambda p, s, _t: _jobshop_model(p, s),  # type: ignore[arg-type]
        _greedy_warm_start(lambda p, _n: heuristics.jobshop_dispatch(p)),
        _jobshop_bound,
        _no_terms,
    ),
}
_GENERIC = _CpSatType(_penalized_build, _qubo_warm_start, _no_bound, _no_terms)
"""Other quantum-encodable types: their penalized QUBO, no bound of their own."""


def _cpsat_type(problem: Problem) -> _CpSatType:
    return _TYPES.get(problem.kind, _GENERIC)


def simple_bound(problem: Problem) -> float | None:
    """A cheap valid bound on the objective (None if the type has none).

    Used when CP-SAT has no bound (or a weaker one), and by heuristics to stop
    early when an answer meets it.
    """
    return _cpsat_type(problem).bound(problem)


def _quality(problem: Problem, built: _Model, search: _Search, best: Candidate) -> Quality:
    proven = search.status == cp_model.OPTIMAL and best.feasible
    bounds: list[float] = []
    if search.scaled_bound is not None and built.bound_in_original_sense:
        sc = built.scaling
        raw = search.scaled_bound / sc.factor + sc.offset
        # Widen by the rounding error so the bound holds for the original floats.
        b = raw + sc.max_error if problem.sense is Sense.MAXIMIZE else raw - sc.max_error
        if math.isfinite(b):
            bounds.append(b)
    simple = simple_bound(problem)
    if simple is not None:
        bounds.append(simple)
    bound: float | None = None
    if bounds:
        bound = min(bounds) if problem.sense is Sense.MAXIMIZE else max(bounds)
    gap = None
    if bound is not None and best.feasible:
        gap = abs(best.objective - bound) / max(1.0, abs(bound))
        # A solution that meets a valid bound is optimal, whoever found it.
        proven = proven or gap <= 1e-12
    return Quality(
        proven_optimal=proven,
        bound=bound,
        gap=gap,
        confidence=1.0 if proven else None,
    )


def _deterministic_limit(settings: CpSatSettings, time_limit_s: float) -> float | None:
    limits = []
    if settings.max_deterministic_time is not None:
        limits.append(settings.max_deterministic_time)
    if settings.deterministic_time_per_s is not None:
        limits.append(settings.deterministic_time_per_s * time_limit_s)
    return min(limits) if limits else None
