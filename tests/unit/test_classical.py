"""CP-SAT classical solver: exact optima against brute force, anytime behaviour, provenance."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from qbridge.errors import NotEligibleError
from qbridge.problems import (
    Evaluation,
    JobShop,
    Knapsack,
    MaxCut,
    Problem,
    Qubo,
    QuboEncoding,
    Sense,
)
from qbridge.solvers.base import Budget, Route
from qbridge.solvers.classical import CpSatSettings, CpSatSolver
from qbridge.solvers.heuristics import jobshop_dispatch, qubo_local_search
from tests.unit.test_problems import (
    brute_force,
    rand_ising,
    rand_jobshop,
    rand_knapsack,
    rand_maxcut,
    rand_portfolio,
    rand_qubo,
)

SOLVER = CpSatSolver()
BUDGET = Budget(time_limit_s=10.0, seed=3, top_n=4)


def _tol(opt: float) -> float:
    # Float objectives are scaled to 1e-6 relative precision per coefficient.
    return 1e-4 * max(1.0, abs(opt))


def jobshop_brute_force(p: JobShop) -> float:
    """Best makespan over every machine order (semi-active schedules are dominant)."""
    ops = p.operations()
    by_machine: dict[int, list[int]] = {}
    for idx, (_, _, op) in enumerate(ops):
        by_machine.setdefault(op.machine, []).append(idx)
    machines = sorted(by_machine)
    best = float("inf")
    for orders in itertools.product(*(itertools.permutations(by_machine[m]) for m in machines)):
        pred_m: dict[int, int] = {}
        for order in orders:
            for a, b in itertools.pairwise(order):
                pred_m[b] = a
        start = [0] * len(ops)
        for _ in range(len(ops) + 1):
            changed = False
            for idx, (_, k, _) in enumerate(ops):
                s = 0
                if k > 0:
                    s = start[idx - 1] + ops[idx - 1][2].duration
                if idx in pred_m:
                    s = max(s, start[pred_m[idx]] + ops[pred_m[idx]][2].duration)
                if s != start[idx]:
                    start[idx], changed = s, True
            if not changed:
                break
        else:
            continue  # cyclic machine orders: no schedule
        best = min(best, max(start[i] + op.duration for i, (_, _, op) in enumerate(ops)))
    return best


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "maxcut": lambda rng: rand_maxcut(rng, rng.randint(6, 12), p=rng.choice([0.3, 0.6, 1.0])),
    "qubo": lambda rng: rand_qubo(rng, rng.randint(6, 12)),
    "ising": lambda rng: rand_ising(rng, rng.randint(6, 12)),
    "knapsack": lambda rng: rand_knapsack(rng, rng.randint(6, 12)),
    "portfolio": lambda rng: rand_portfolio(rng, rng.randint(5, 12)),
}


@pytest.mark.parametrize("kind", sorted(GENERATORS))
@pytest.mark.parametrize("seed", range(4))
def test_exact_optimum_equals_brute_force(kind: str, seed: int) -> None:
    rng = random.Random(1000 * seed + len(kind))
    p = GENERATORS[kind](rng)
    opt = brute_force(p)
    out = SOLVER.solve(p, BUDGET)
    assert out.best.feasible
    assert out.best.objective == pytest.approx(opt, abs=_tol(opt))
    assert out.quality.proven_optimal
    assert out.quality.bound is not None and out.quality.gap is not None
    # The bound must hold for the original floats, despite the integer scaling.
    if p.sense is Sense.MAXIMIZE:
        assert out.quality.bound >= opt - 1e-9
    else:
        assert out.quality.bound <= opt + 1e-9
    # The reported objective is recomputed on the original problem.
    assert out.best.objective == p.evaluate(out.best.assignment).objective


@pytest.mark.parametrize(("jobs", "machines", "seed"), [(2, 3, 0), (3, 3, 1), (3, 3, 2), (3, 4, 3)])
def test_jobshop_optimum_equals_brute_force(jobs: int, machines: int, seed: int) -> None:
    p = rand_jobshop(random.Random(seed), jobs, machines)
    opt = jobshop_brute_force(p)
    out = SOLVER.solve(p, BUDGET)
    assert out.best.feasible and out.quality.proven_optimal
    assert out.best.objective == opt
    assert out.quality.gap == 0.0
    assert p.evaluate(out.best.assignment).feasible


def test_integer_data_is_exact() -> None:
    p = MaxCut.from_dict(
        {
            "num_nodes": 5,
            "edges": [[i, j, 1 + (i + j) % 3] for i in range(5) for j in range(i + 1, 5)],
        }
    )
    out = SOLVER.solve(p, BUDGET)
    assert out.provenance.settings["scale_max_error"] == 0.0
    assert out.quality.bound == out.best.objective == brute_force(p)
    assert out.quality.gap == 0.0


def test_decimal_data_is_scaled_exactly() -> None:
    p = Knapsack.from_dict(
        {"values": [3.25, 4.5, 5.1, 6.75], "weights": [2, 3, 4, 5], "capacity": 7}
    )
    out = SOLVER.solve(p, BUDGET)
    assert out.provenance.settings["scale_factor"] == 100.0
    assert out.best.objective == pytest.approx(brute_force(p))
    assert out.quality.gap == pytest.approx(0.0, abs=1e-12)


def test_top_n_candidates_are_distinct_ranked_and_evaluated() -> None:
    p = rand_maxcut(random.Random(5), 12, p=0.5)
    out = SOLVER.solve(p, Budget(time_limit_s=10, seed=0, top_n=3))
    assert 1 <= len(out.candidates) <= 3
    assert out.candidates[0] == out.best
    assert len({c.assignment for c in out.candidates}) == len(out.candidates)
    objs = [c.objective for c in out.candidates]
    assert objs == sorted(objs, reverse=True)
    for c in out.candidates:
        assert c.objective == p.evaluate(c.assignment).objective


def test_provenance() -> None:
    p = rand_knapsack(random.Random(1), 8)
    out = SOLVER.solve(p, Budget(time_limit_s=5, seed=42))
    prov = out.provenance
    assert prov.route is Route.CLASSICAL
    assert (prov.solver, prov.backend) == ("cp-sat", "ortools")
    assert prov.backend_version and prov.sdk_versions["ortools"] == prov.backend_version
    assert prov.seed == 42
    assert prov.settings["num_workers"] == 1
    assert prov.settings["status"] == "OPTIMAL"
    assert prov.settings["stopped_by"] == "proof"
    assert prov.timings.execute_s > 0 and prov.timings.postprocess_s >= 0
    assert prov.cost_units > 0
    # Settings must rebuild the solver (replay).
    known = {k: v for k, v in prov.settings.items() if k in CpSatSettings.__dataclass_fields__}
    assert CpSatSettings(**known) == SOLVER.settings


def test_deterministic_for_a_seed() -> None:
    p = rand_qubo(random.Random(9), 12)
    a = SOLVER.solve(p, Budget(time_limit_s=5, seed=7))
    b = SOLVER.solve(p, Budget(time_limit_s=5, seed=7))
    assert a.best == b.best
    assert a.candidates == b.candidates


def test_deterministic_time_limit_is_reproducible() -> None:
    # Large enough that CP-SAT cannot prove optimality in the tiny deterministic budget.
    p = rand_maxcut(random.Random(4), 70, p=0.3)
    solver = CpSatSolver(CpSatSettings(max_deterministic_time=0.05))
    a = solver.solve(p, Budget(time_limit_s=20, seed=1))
    b = solver.solve(p, Budget(time_limit_s=20, seed=1))
    assert a.provenance.settings["stopped_by"] == "deterministic_time"
    assert a.best == b.best and a.quality.bound == b.quality.bound


def test_warm_start_answers_when_cp_sat_has_no_time() -> None:
    p = rand_maxcut(random.Random(2), 200, p=0.5)
    out = SOLVER.solve(p, Budget(time_limit_s=0.0, seed=0))
    assert out.best.feasible
    assert out.best.objective > 0.5 * sum(max(w, 0.0) for _, _, w in p.edges)
    assert out.provenance.settings["stopped_by"] == "no_time"
    assert not out.quality.proven_optimal


def test_anytime_within_budget() -> None:
    p = rand_maxcut(random.Random(3), 80, p=0.3)
    out = SOLVER.solve(p, Budget(time_limit_s=1.0, seed=0))
    wall = out.provenance.timings.execute_s + out.provenance.timings.postprocess_s
    assert wall < 3.0  # stops near its 1 s budget, not at CP-SAT's own end (slack for load)
    assert out.best.feasible and out.quality.bound is not None
    assert out.quality.gap is not None and out.quality.gap > 0


def test_jobshop_warm_start_is_feasible() -> None:
    p = rand_jobshop(random.Random(8), 6, 5)
    res = jobshop_dispatch(p)
    ((starts, makespan),) = res.solutions
    ev = p.evaluate(starts)
    assert ev.feasible and ev.objective == makespan
    out = SOLVER.solve(p, Budget(time_limit_s=0.0))
    assert out.best.feasible


def test_qubo_local_search_finds_optimum_of_small_qubos() -> None:
    for seed in range(3):
        p = rand_qubo(random.Random(seed), 10)
        res = qubo_local_search(p.qubo, seed=seed)
        best_bits, best_e = res.solutions[0]
        assert best_e == pytest.approx(p.qubo.energy(best_bits))
        assert best_e == pytest.approx(brute_force(p), abs=1e-9)


def test_eligibility() -> None:
    assert SOLVER.eligibility(rand_jobshop(random.Random(0), 2, 2)).eligible
    small = CpSatSolver(CpSatSettings(max_variables=5))
    p = rand_maxcut(random.Random(0), 6)
    elig = small.eligibility(p)
    assert not elig.eligible and "variables" in elig.reason
    with pytest.raises(NotEligibleError):
        small.solve(p, BUDGET)


@dataclass(frozen=True)
class ExactlyOne(Problem):
    """A type without a dedicated model: solved through its penalized QUBO."""

    kind: ClassVar[str] = "exactly-one"
    sense: ClassVar[Sense] = Sense.MAXIMIZE

    values: tuple[float, ...]

    @property
    def num_variables(self) -> int:
        return len(self.values)

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        value = sum(v for v, b in zip(self.values, assignment, strict=True) if b)
        return Evaluation(value, sum(assignment) == 1)

    def to_qubo(self) -> QuboEncoding:
        n = len(self.values)
        a = 10.0 * sum(abs(v) for v in self.values) + 1.0
        # -sum v x + A (sum x - 1)^2, with one useless slack bit to test decoding.
        linear = [-v - a for v in self.values] + [0.5]
        quad = {(i, j): 2 * a for i in range(n) for j in range(i + 1, n)}
        return QuboEncoding(Qubo.build(n + 1, linear, quad, a), n)

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExactlyOne:
        return cls(tuple(data["values"]))


def test_generic_encodable_type_goes_through_its_qubo() -> None:
    p = ExactlyOne((1.0, 5.0, 3.0))
    assert SOLVER.eligibility(p).eligible
    out = SOLVER.solve(p, BUDGET)
    assert out.best.assignment == (0, 1, 0)
    assert out.best.feasible and out.best.objective == 5.0
    assert out.quality.bound is None  # a QUBO bound says nothing about the original sense


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_bound_without_search_is_valid(kind: str) -> None:
    # With no time for CP-SAT, the reported bound is a cheap one; it must still hold.
    for seed in range(3):
        p = GENERATORS[kind](random.Random(77 + seed))
        out = SOLVER.solve(p, Budget(time_limit_s=0.0, seed=seed))
        assert out.provenance.settings["status"] == "NOT_RUN"
        opt = brute_force(p)
        assert out.quality.bound is not None
        if p.sense is Sense.MAXIMIZE:
            assert out.quality.bound >= opt - 1e-9
        else:
            assert out.quality.bound <= opt + 1e-9
        if out.quality.proven_optimal:
            assert out.best.objective == pytest.approx(opt)


def test_meeting_the_simple_bound_proves_optimality() -> None:
    # Bipartite graph, positive weights: the cut of all edges is reachable.
    p = MaxCut.from_dict({"num_nodes": 4, "edges": [[0, 1, 1.0], [1, 2, 2.0], [2, 3, 1.5]]})
    out = SOLVER.solve(p, Budget(time_limit_s=0.0))
    assert out.best.objective == 4.5
    assert out.quality.proven_optimal and out.quality.gap == 0.0
