"""Classical portfolio: optima against brute force, repairs, edge cases, anytime behaviour."""

from __future__ import annotations

import random

import numpy as np
import pytest

from qbridge.problems import Knapsack, MaxCut, Problem
from qbridge.solvers.anneal import (
    AnnealSettings,
    BinaryModel,
    _Annealer,
    _descend_dense,
    anneal_runs,
    descend,
)
from qbridge.solvers.base import Budget, Outcome
from qbridge.solvers.fallback import last_resort
from qbridge.solvers.portfolio import (
    ClassicalPortfolio,
    PortfolioSettings,
    better,
    instant_outcome,
)
from qbridge.solvers.strategy import STRATEGIES, strategy_for
from tests.unit.test_classical import GENERATORS, jobshop_brute_force
from tests.unit.test_problems import (
    brute_force,
    rand_ising,
    rand_jobshop,
    rand_knapsack,
    rand_maxcut,
    rand_portfolio,
    rand_qubo,
)

PORTFOLIO = ClassicalPortfolio()
HEURISTICS_ONLY = ClassicalPortfolio(PortfolioSettings(use_cpsat=False))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


SMALL = GENERATORS


@pytest.mark.parametrize("kind", sorted(SMALL))
@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_brute_force(kind: str, seed: int) -> None:
    problem = SMALL[kind](random.Random(f"{kind}-{seed}"))
    out = PORTFOLIO.solve(problem, Budget(time_limit_s=5.0, seed=seed))
    assert out.best.feasible
    assert _close(out.best.objective, brute_force(problem))
    assert out.best.objective == problem.evaluate(out.best.assignment).objective


@pytest.mark.parametrize("kind", ["maxcut", "qubo", "ising", "portfolio"])
@pytest.mark.parametrize("seed", range(2))
def test_native_heuristics_alone_agree_with_brute_force(kind: str, seed: int) -> None:
    problem = SMALL[kind](random.Random(f"heur-{kind}-{seed}"))
    out = HEURISTICS_ONLY.solve(problem, Budget(time_limit_s=1.0, seed=seed))
    members = {r["member"] for r in out.provenance.settings["runs"]}
    assert "cp-sat" not in members
    assert out.best.feasible
    assert _close(out.best.objective, brute_force(problem))


def test_jobshop_agrees_with_brute_force() -> None:
    problem = rand_jobshop(random.Random(7), jobs=3, machines=2)
    out = PORTFOLIO.solve(problem, Budget(time_limit_s=5.0, seed=1))
    assert out.best.feasible and out.quality.proven_optimal
    assert out.best.objective == jobshop_brute_force(problem)
    assert out.provenance.solver == "cp-sat"


def test_knapsack_repair_makes_any_selection_feasible_and_maximal() -> None:
    problem = rand_knapsack(random.Random(3), 30, capacity=40)
    repair = strategy_for(problem).repair
    for start in ([1] * 30, [0] * 30, [i % 2 for i in range(30)]):
        fixed = repair(problem, start)
        assert problem.evaluate(fixed).feasible
        load = problem.total_weight(fixed)
        # Maximal: no left-out item fits any more.
        left_out = [w for w, b in zip(problem.weights, fixed, strict=True) if not b]
        assert all(load + w > problem.capacity for w in left_out)


def test_portfolio_repair_meets_the_cardinality_and_never_worsens() -> None:
    problem = rand_portfolio(random.Random(5), 12)
    repair = strategy_for(problem).repair
    for start in ([1] * 12, [0] * 12, [1, 0] * 6):
        fixed = repair(problem, start)
        assert sum(fixed) == problem.budget
        assert problem.evaluate(fixed).feasible
    good = repair(problem, [0] * 12)
    assert problem.evaluate(repair(problem, good)).objective <= problem.evaluate(good).objective


def test_portfolio_via_qubo_with_slack_free_encoding_is_repaired() -> None:
    # A larger instance goes through the annealed QUBO encoding plus repair.
    problem = rand_portfolio(random.Random(11), 60)
    assert not strategy_for(problem).exact_first(problem)
    out = PORTFOLIO.solve(problem, Budget(time_limit_s=0.5, seed=2))
    assert out.best.feasible and sum(out.best.assignment) == problem.budget
    members = {r["member"] for r in out.provenance.settings["runs"]}
    assert "anneal" in members


def test_all_negative_weights_cut_nothing_and_stop_on_the_matched_bound() -> None:
    edges = [(i, j, -1.5) for i in range(8) for j in range(i + 1, 8)]
    problem = MaxCut(num_nodes=8, edges=tuple(edges))
    out = HEURISTICS_ONLY.solve(problem, Budget(time_limit_s=30.0, seed=0))
    assert out.best.objective == 0.0
    assert out.quality.proven_optimal and out.quality.bound == 0.0
    # Stopped on the bound: no native run was needed after the instant answer.
    assert [r["member"] for r in out.provenance.settings["runs"]] == ["greedy"]


def test_zero_weights_and_no_edges() -> None:
    problem = MaxCut(num_nodes=5, edges=((0, 1, 0.0), (2, 3, 0.0)))
    assert problem.edges == ()  # zero edges are dropped by normalization
    out = PORTFOLIO.solve(problem, Budget(time_limit_s=5.0, seed=0))
    assert out.best.objective == 0.0 and out.quality.proven_optimal


def test_mixed_sign_weights_on_a_disconnected_graph() -> None:
    rng = random.Random(9)
    # Three components (a 5-clique, a 4-cycle, a 3-path) and two isolated nodes.
    edges = [(i, j, rng.choice([-2.0, -0.5, 1.0, 3.0])) for i in range(5) for j in range(i + 1, 5)]
    edges += [(5, 6, 1.0), (6, 7, -1.0), (7, 8, 2.0), (5, 8, 1.5), (9, 10, 1.0), (10, 11, 4.0)]
    problem = MaxCut(num_nodes=14, edges=tuple(edges))
    for solver in (PORTFOLIO, HEURISTICS_ONLY):
        out = solver.solve(problem, Budget(time_limit_s=0.5, seed=1))
        assert _close(out.best.objective, brute_force(problem))


def _hard_maxcut(n: int, seed: int) -> MaxCut:
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(n, 1)
    keep = rng.random(i.size) < 6.0 / n
    w = rng.choice([-1.0, 1.0], size=int(keep.sum()))
    return MaxCut(n, tuple(zip(i[keep].tolist(), j[keep].tolist(), w.tolist(), strict=True)))


def test_uses_the_budget_and_improves_on_the_instant_answer() -> None:
    problem = _hard_maxcut(600, 4)
    seen: list[Outcome] = []
    out = PORTFOLIO.run(problem, Budget(time_limit_s=1.0, seed=3), emit=seen.append)
    instant = instant_outcome(problem, 3)
    assert instant is not None
    assert out.best.objective > instant.best.objective
    runs = [r for r in out.provenance.settings["runs"] if r["member"] in ("anneal", "reheat")]
    assert len(runs) > 2  # not one batch and stop: the time left keeps being used
    assert max(r["sweeps"] for r in runs) > runs[0]["sweeps"]  # longer runs follow the first
    # Every emitted answer improves on the previous one; the last one is the final answer.
    objectives = [o.best.objective for o in seen]
    assert objectives == sorted(objectives) and len(set(objectives)) == len(objectives)
    assert objectives[-1] == out.best.objective
    assert out.provenance.backend == "dwave-samplers"


def test_deterministic_runs_repeat_for_a_seed() -> None:
    problem = _hard_maxcut(200, 1)
    model = strategy_for(problem).model
    assert model is not None
    settings = AnnealSettings(deterministic=True)

    def first_runs() -> list[tuple[str, int, tuple[int, ...]]]:
        runs = anneal_runs(
            model(problem), 5, deadline=float("inf"), settings=settings, budget_s=0.2
        )
        return [
            (r.member, r.sweeps, tuple(r.bits.tolist()))
            for _, r in zip(range(4), runs, strict=False)
        ]

    assert first_runs() == first_runs()


def test_binary_model_energy_matches_the_problem() -> None:
    rng = random.Random(2)
    for problem in (rand_qubo(rng, 9), rand_ising(rng, 9)):
        model = strategy_for(problem).model
        assert model is not None
        m = model(problem)
        for _ in range(5):
            x = [rng.randint(0, 1) for _ in range(9)]
            assert _close(m.energy(x), problem.evaluate(x).objective)
    cut = rand_maxcut(rng, 9)
    m = BinaryModel.ising(np.zeros(9), cut.edges)
    x = [rng.randint(0, 1) for _ in range(9)]
    total = sum(w for _, _, w in cut.edges)
    assert _close(m.energy(x), total - 2 * cut.evaluate(x).objective)


def test_every_builtin_type_has_a_registry_entry() -> None:
    from qbridge.problems.registry import PROBLEM_TYPES

    assert set(STRATEGIES) == set(PROBLEM_TYPES)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_instant_answer_and_last_resort_are_feasible(kind: str) -> None:
    problem: Problem = SMALL[kind](random.Random(kind))
    inst = instant_outcome(problem, 0)
    assert inst is not None and inst.best.feasible
    rescue = last_resort(problem, 0, time_limit_s=0.05)
    assert rescue is not None and rescue.feasible


def test_better_prefers_feasible_then_objective() -> None:
    problem = Knapsack(values=(3.0, 4.0), weights=(1, 1), capacity=1)
    a = PORTFOLIO.solve(problem, Budget(time_limit_s=1.0))
    assert better(problem, None, a) is a and better(problem, a, None) is a
    assert a.best.objective == 4.0


def test_knapsack_cpsat_leads_and_proves() -> None:
    problem = rand_knapsack(random.Random(1), 40)
    out = PORTFOLIO.solve(problem, Budget(time_limit_s=5.0, seed=0))
    assert out.quality.proven_optimal and out.best.feasible


@pytest.mark.parametrize("kind", ["maxcut", "ising"])
def test_qubit_count_without_encoding_matches_the_encoding(kind: str) -> None:
    problem = SMALL[kind](random.Random(f"qubits-{kind}"))
    assert problem.num_qubits() == problem.to_qubo().qubo.num_variables


def test_a_run_that_cannot_finish_is_quenched_and_one_that_can_completes() -> None:
    problem = _hard_maxcut(100, 2)
    model = BinaryModel.ising(np.zeros(100), problem.edges)
    annealer = _Annealer(model)
    betas = np.geomspace(0.1, 5.0, 1000)
    rng = np.random.default_rng(0)
    state = np.ones(100, dtype=np.int8)
    # Deadline already passed: nothing runs, the run reports it did not complete.
    done, complete = annealer.run(state.copy(), betas, 100, rng, 0.0, 0.8, [1e6])
    assert (done, complete) == (0, False)
    # Plenty of time: the whole schedule runs, in segments, and leaves a low energy.
    annealed = state.copy()
    done, complete = annealer.run(annealed, betas, 100, rng, float("inf"), 0.8, [1e6])
    assert (done, complete) == (1000, True)
    assert set(np.unique(annealed)) <= {-1, 1}
    bits = ((1 - annealed) // 2).astype(np.int8)
    assert model.energy(bits) < model.energy(np.zeros(100, dtype=np.int8))


@pytest.mark.parametrize("kind", ["maxcut", "qubo", "ising"])
def test_dense_descent_reaches_a_local_minimum_like_the_native_one(kind: str) -> None:
    rng = random.Random(f"descent-{kind}")
    problem = SMALL[kind](rng)
    build = strategy_for(problem).model
    assert build is not None
    model = build(problem)
    n = model.num_variables
    for _ in range(3):
        start = np.array([rng.randint(0, 1) for _ in range(n)], dtype=np.int8)
        x = _descend_dense(model, start)
        assert model.energy(x) <= model.energy(start) + 1e-9
        for i in range(n):  # no single flip improves
            y = x.copy()
            y[i] = 1 - y[i]
            assert model.energy(y) >= model.energy(x) - 1e-9
    assert descend(model, np.zeros(n, dtype=np.int8)).shape == (n,)
