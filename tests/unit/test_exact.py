"""Exact enumeration: the optimum of every supported kind, checked against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from qbridge.errors import NotEligibleError
from qbridge.problems.base import Problem, Sense
from qbridge.problems.registry import problem_from_dict
from qbridge.samples import regular_maxcut
from qbridge.solvers.base import Budget, Candidate, rank_candidates
from qbridge.solvers.exact import ExactSolver


def _brute(problem: Problem, top_n: int) -> tuple[Candidate, ...]:
    cands = []
    for bits in itertools.product((0, 1), repeat=problem.num_variables):
        ev = problem.evaluate(bits)
        cands.append(Candidate(tuple(bits), ev.objective, ev.feasible))
    return rank_candidates(problem, cands, top_n)


def _problems() -> list[Problem]:
    rng = random.Random(5)
    n = 7
    cov = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            cov[i][j] = cov[j][i] = rng.uniform(0.0, 0.3) + (1.0 if i == j else 0.0)
    return [
        regular_maxcut(8, rng),
        problem_from_dict(
            "qubo",
            {
                "num_variables": 6,
                "linear": [rng.uniform(-2, 2) for _ in range(6)],
                "quadratic": [
                    [i, j, rng.uniform(-2, 2)] for i in range(6) for j in range(i + 1, 6)
                ],
                "offset": 1.5,
            },
        ),
        problem_from_dict(
            "ising",
            {
                "h": [rng.uniform(-1, 1) for _ in range(5)],
                "J": [[i, i + 1, rng.uniform(-1, 1)] for i in range(4)],
                "offset": -0.5,
            },
        ),
        problem_from_dict(
            "knapsack",
            {
                "values": [rng.uniform(1, 10) for _ in range(9)],
                "weights": [rng.randint(1, 9) for _ in range(9)],
                "capacity": 17,
            },
        ),
        problem_from_dict(
            "portfolio",
            {
                "expected_returns": [rng.uniform(0, 1) for _ in range(n)],
                "covariance": cov,
                "budget": 3,
                "risk_aversion": 0.7,
            },
        ),
    ]


@pytest.mark.parametrize("problem", _problems(), ids=lambda p: p.kind)
def test_enumeration_finds_the_brute_force_top_n(problem: Problem) -> None:
    out = ExactSolver().solve(problem, Budget(top_n=4, seed=3))
    expected = _brute(problem, 4)
    assert [c.assignment for c in out.candidates] == [c.assignment for c in expected]
    assert [c.objective for c in out.candidates] == pytest.approx(
        [c.objective for c in expected], abs=1e-9
    )
    assert [c.feasible for c in out.candidates] == [c.feasible for c in expected]
    assert out.best == out.candidates[0] and out.best.feasible
    assert out.quality.proven_optimal and out.quality.gap == 0.0
    assert out.provenance.solver == "exact" and out.provenance.seed == 3


def test_maximize_and_ties_follow_rank_candidates() -> None:
    edges = [[0, 1, 1.0], [1, 2, 1.0], [2, 3, 1.0], [0, 3, 1.0]]
    square = problem_from_dict("maxcut", {"num_nodes": 4, "edges": edges})
    assert square.sense is Sense.MAXIMIZE
    out = ExactSolver().solve(square, Budget(top_n=3))
    # Two optimal cuts of value 4; the lexicographically smaller one first.
    assert [(c.assignment, c.objective) for c in out.candidates[:2]] == [
        ((0, 1, 0, 1), 4.0),
        ((1, 0, 1, 0), 4.0),
    ]


def test_blocks_cover_problems_larger_than_one_block() -> None:
    rng = random.Random(2)
    problem = regular_maxcut(18, rng)
    out = ExactSolver().solve(problem, Budget(top_n=2))
    assert out.provenance.settings["assignments"] == 2**18
    # Complementing a cut gives the same value: the top two are complements.
    a, b = out.candidates
    assert a.objective == b.objective
    assert tuple(1 - v for v in a.assignment) == b.assignment
    assert problem.evaluate(a.assignment).objective == a.objective


def test_too_large_or_unsupported_problems_are_not_eligible() -> None:
    solver = ExactSolver(max_variables=6)
    big = regular_maxcut(8, random.Random(1))
    assert not solver.eligibility(big).eligible
    with pytest.raises(NotEligibleError):
        solver.solve(big, Budget())
    shop = problem_from_dict("jobshop", {"jobs": [[[0, 2], [1, 1]], [[1, 2], [0, 1]]]})
    assert not ExactSolver().eligibility(shop).eligible
