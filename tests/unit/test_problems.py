"""Problem model: validation, normalization, fingerprints, round trips, QUBO encodings."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbridge.errors import InvalidProblemError, NotEligibleError, ProblemTooLargeError
from qbridge.problems import (
    PROBLEM_TYPES,
    IsingProblem,
    JobShop,
    Knapsack,
    Limits,
    MaxCut,
    Portfolio,
    Problem,
    QuboProblem,
    check_limits,
    problem_from_dict,
)
from qbridge.problems.knapsack import slack_coefficients

# ---------------------------------------------------------------- instances


def rand_maxcut(rng: random.Random, n: int, p: float = 0.5) -> MaxCut:
    edges = [
        [i, j, round(rng.uniform(-1.0, 3.0), 3)]
        for i in range(n)
        for j in range(i + 1, n)
        if rng.random() < p
    ]
    return MaxCut.from_dict({"num_nodes": n, "edges": edges})


def rand_qubo(rng: random.Random, n: int) -> QuboProblem:
    return QuboProblem.from_dict(
        {
            "num_variables": n,
            "linear": [rng.uniform(-2, 2) for _ in range(n)],
            "quadratic": [
                [i, j, rng.uniform(-2, 2)]
                for i in range(n)
                for j in range(i + 1, n)
                if rng.random() < 0.6
            ],
            "offset": rng.uniform(-1, 1),
        }
    )


def rand_ising(rng: random.Random, n: int) -> IsingProblem:
    return IsingProblem.from_dict(
        {
            "h": [rng.uniform(-1, 1) for _ in range(n)],
            "J": [
                [i, j, rng.uniform(-1, 1)]
                for i in range(n)
                for j in range(i + 1, n)
                if rng.random() < 0.6
            ],
            "offset": 0.25,
        }
    )


def rand_knapsack(rng: random.Random, n: int, capacity: int | None = None) -> Knapsack:
    weights = [rng.randint(1, 9) for _ in range(n)]
    cap = capacity if capacity is not None else rng.randint(1, sum(weights))
    return Knapsack.from_dict(
        {
            "values": [round(rng.uniform(0, 10), 2) for _ in range(n)],
            "weights": weights,
            "capacity": cap,
        }
    )


def rand_portfolio(rng: random.Random, n: int) -> Portfolio:
    a = np.array([[rng.gauss(0, 1) for _ in range(n)] for _ in range(n + 2)])
    cov = (a.T @ a) / (n + 2)
    return Portfolio.from_dict(
        {
            "expected_returns": [rng.uniform(-0.2, 0.5) for _ in range(n)],
            "covariance": cov.tolist(),
            "budget": rng.randint(1, n),
            "risk_aversion": rng.uniform(0, 2),
        }
    )


def rand_jobshop(rng: random.Random, jobs: int, machines: int) -> JobShop:
    data = []
    for _ in range(jobs):
        order = list(range(machines))
        rng.shuffle(order)
        data.append([[m, rng.randint(1, 6)] for m in order])
    return JobShop.from_dict({"jobs": data})


def all_bits(n: int) -> list[tuple[int, ...]]:
    return list(itertools.product((0, 1), repeat=n))


def brute_force(problem: Problem) -> float:
    """Best feasible objective over every binary assignment."""
    best: float | None = None
    for x in all_bits(problem.num_variables):
        ev = problem.evaluate(x)
        if ev.feasible and (best is None or problem.is_better(ev.objective, best)):
            best = ev.objective
    assert best is not None
    return best


# ---------------------------------------------------------------- registry / round trip

EXAMPLES: dict[str, dict[str, Any]] = {
    "maxcut": {"num_nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 2.5]]},
    "qubo": {"num_variables": 2, "linear": [1.0, -1.0], "quadratic": [[0, 1, 2.0]], "offset": 0},
    "ising": {"h": [0.5, -0.5], "J": [[0, 1, 1.0]], "offset": 0.0},
    "knapsack": {"values": [1.0, 2.0], "weights": [1, 2], "capacity": 2},
    "portfolio": {
        "expected_returns": [0.1, 0.2],
        "covariance": [[0.1, 0.01], [0.01, 0.2]],
        "budget": 1,
        "risk_aversion": 0.5,
    },
    "jobshop": {"jobs": [[[0, 2], [1, 3]], [[1, 1], [0, 2]]]},
    "classification": {"features": [[0.0, 1.0], [1.0, 0.5]] * 2, "labels": [0, 1] * 2, "folds": 2},
}


def test_registry_knows_every_kind() -> None:
    assert set(PROBLEM_TYPES) == set(EXAMPLES)
    for kind, cls in PROBLEM_TYPES.items():
        assert cls.kind == kind


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_json_round_trip(kind: str) -> None:
    p = problem_from_dict(kind, EXAMPLES[kind])
    wire = json.loads(json.dumps(p.to_dict()))
    q = problem_from_dict(kind, wire)
    assert q == p or q.canonical_json() == p.canonical_json()
    assert q.fingerprint() == p.fingerprint()
    assert json.loads(p.canonical_json())["kind"] == kind


@pytest.mark.parametrize("seed", range(3))
def test_random_round_trips(seed: int) -> None:
    rng = random.Random(seed)
    for p in (
        rand_maxcut(rng, 7),
        rand_qubo(rng, 6),
        rand_ising(rng, 6),
        rand_knapsack(rng, 6),
        rand_portfolio(rng, 5),
        rand_jobshop(rng, 3, 3),
    ):
        q = type(p).from_dict(json.loads(json.dumps(p.to_dict())))
        assert q.fingerprint() == p.fingerprint()
        assert q.canonical_json() == p.canonical_json()


def test_unknown_kind() -> None:
    with pytest.raises(InvalidProblemError) as exc:
        problem_from_dict("tsp", {})
    assert exc.value.field == "kind"


# ---------------------------------------------------------------- fingerprints


def test_maxcut_fingerprint_ignores_order_orientation_and_duplicates() -> None:
    a = MaxCut.from_dict({"num_nodes": 4, "edges": [[0, 1, 2.0], [2, 3, 1.0], [1, 3, 0.5]]})
    b = MaxCut.from_dict(
        {"num_nodes": 4, "edges": [[3, 1, 0.5], [3, 2, 1], [1, 0, 1.5], [0, 1, 0.5]]}
    )
    assert a.fingerprint() == b.fingerprint()
    assert b.edges == ((0, 1, 2.0), (1, 3, 0.5), (2, 3, 1.0))
    c = MaxCut.from_dict({"num_nodes": 4, "edges": [[0, 1, 2.0], [2, 3, 1.0], [1, 3, 0.6]]})
    assert c.fingerprint() != a.fingerprint()
    d = MaxCut.from_dict({"num_nodes": 5, "edges": [[0, 1, 2.0], [2, 3, 1.0], [1, 3, 0.5]]})
    assert d.fingerprint() != a.fingerprint()


def test_maxcut_zero_sum_edges_are_dropped() -> None:
    a = MaxCut.from_dict({"num_nodes": 3, "edges": [[0, 1, 1.0], [1, 0, -1.0], [1, 2, 1]]})
    assert a.edges == ((1, 2, 1.0),)


def test_qubo_fingerprint_normalizes_terms() -> None:
    a = QuboProblem.from_dict(
        {"num_variables": 3, "linear": [1, 0, 0], "quadratic": [[0, 2, 1.0], [2, 0, 1.0]]}
    )
    b = QuboProblem.from_dict(
        {"num_variables": 3, "quadratic": [[0, 0, 1.0], [0, 2, 2.0]], "offset": -0.0}
    )
    assert a.fingerprint() == b.fingerprint()


def test_ising_fingerprint_and_diagonal_fold() -> None:
    a = IsingProblem.from_dict({"h": [1, 0], "J": [[1, 0, 0.5], [0, 0, 2.0]]})
    b = IsingProblem.from_dict({"h": [1.0, 0.0], "J": [[0, 1, 0.5]], "offset": 2.0})
    assert a.fingerprint() == b.fingerprint()


def test_kinds_with_equal_payload_differ() -> None:
    # The kind is part of the canonical JSON.
    q = QuboProblem.from_dict({"num_variables": 1})
    assert json.loads(q.canonical_json())["kind"] == "qubo"


def test_portfolio_symmetrized_fingerprint() -> None:
    base = EXAMPLES["portfolio"]
    tweaked = dict(base, covariance=[[0.1, 0.01], [0.01 + 1e-13, 0.2]])
    assert Portfolio.from_dict(base).covariance[0][1] == 0.01
    assert (
        Portfolio.from_dict(tweaked).covariance[0][1]
        == Portfolio.from_dict(tweaked).covariance[1][0]
    )


# ---------------------------------------------------------------- validation

INVALID: list[tuple[str, dict[str, Any], str | None]] = [
    ("maxcut", {"edges": []}, "num_nodes"),
    ("maxcut", {"num_nodes": 0}, "num_nodes"),
    ("maxcut", {"num_nodes": 2.0}, "num_nodes"),
    ("maxcut", {"num_nodes": True}, "num_nodes"),
    ("maxcut", {"num_nodes": 3, "edges": [[0, 0, 1.0]]}, "edges[0]"),
    ("maxcut", {"num_nodes": 3, "edges": [[0, 1, 1], [0, 3, 1.0]]}, "edges[1][1]"),
    ("maxcut", {"num_nodes": 3, "edges": [[0, -1, 1.0]]}, "edges[0][1]"),
    ("maxcut", {"num_nodes": 3, "edges": [[0, 1, math.nan]]}, "edges[0][2]"),
    ("maxcut", {"num_nodes": 3, "edges": [[0, 1, math.inf]]}, "edges[0][2]"),
    ("maxcut", {"num_nodes": 3, "edges": [[0, 1, "1"]]}, "edges[0][2]"),
    ("maxcut", {"num_nodes": 3, "edges": [[0, 1]]}, "edges[0]"),
    ("maxcut", {"num_nodes": 3, "edges": {"0": 1}}, "edges"),
    ("maxcut", {"num_nodes": 3, "edges": None}, "edges"),
    ("maxcut", {"num_nodes": 3, "edge": []}, "edge"),
    ("qubo", {"num_variables": 2, "linear": [1.0]}, "linear"),
    ("qubo", {"num_variables": 2, "linear": [1.0, math.nan]}, "linear[1]"),
    ("qubo", {"num_variables": 2, "quadratic": [[0, 2, 1.0]]}, "quadratic[0][1]"),
    ("qubo", {"num_variables": 2, "offset": math.inf}, "offset"),
    ("ising", {"h": []}, "h"),
    ("ising", {"h": [0.0, 1.0], "J": [[0, 5, 1.0]]}, "J[0][1]"),
    ("ising", {"J": []}, "h"),
    ("knapsack", {"values": [1.0], "weights": [1, 2], "capacity": 1}, "weights"),
    ("knapsack", {"values": [-1.0], "weights": [1], "capacity": 1}, "values[0]"),
    ("knapsack", {"values": [math.nan], "weights": [1], "capacity": 1}, "values[0]"),
    ("knapsack", {"values": [1.0], "weights": [0], "capacity": 1}, "weights[0]"),
    ("knapsack", {"values": [1.0], "weights": [1.5], "capacity": 1}, "weights[0]"),
    ("knapsack", {"values": [1.0], "weights": [1], "capacity": -1}, "capacity"),
    ("knapsack", {"values": [], "weights": [], "capacity": 1}, "values"),
    (
        "portfolio",
        {"expected_returns": [0.1, 0.2], "covariance": [[1, 0], [0, 1], [0, 0]], "budget": 1},
        "covariance",
    ),
    (
        "portfolio",
        {"expected_returns": [0.1, 0.2], "covariance": [[1, 0], [0]], "budget": 1},
        "covariance[1]",
    ),
    (
        "portfolio",
        {"expected_returns": [0.1, 0.2], "covariance": [[1, 0.5], [0.4, 1]], "budget": 1},
        "covariance",
    ),
    (
        "portfolio",
        {"expected_returns": [0.1, 0.2], "covariance": [[1, 2], [2, 1]], "budget": 1},
        "covariance",
    ),
    (
        "portfolio",
        {"expected_returns": [0.1, 0.2], "covariance": [[1, 0], [0, math.nan]], "budget": 1},
        "covariance[1][1]",
    ),
    (
        "portfolio",
        {"expected_returns": [0.1, math.inf], "covariance": [[1, 0], [0, 1]], "budget": 1},
        "expected_returns[1]",
    ),
    (
        "portfolio",
        {"expected_returns": [0.1, 0.2], "covariance": [[1, 0], [0, 1]], "budget": 3},
        "budget",
    ),
    (
        "portfolio",
        {"expected_returns": [0.1, 0.2], "covariance": [[1, 0], [0, 1]], "budget": 0},
        "budget",
    ),
    (
        "portfolio",
        {
            "expected_returns": [0.1, 0.2],
            "covariance": [[1, 0], [0, 1]],
            "budget": 1,
            "risk_aversion": -1,
        },
        "risk_aversion",
    ),
    ("jobshop", {"jobs": []}, "jobs"),
    ("jobshop", {"jobs": [[]]}, "jobs[0]"),
    ("jobshop", {"jobs": [[[0, 1]], [[0, 0]]]}, "jobs[1][0][1]"),
    ("jobshop", {"jobs": [[[0, 1]], [[-1, 2]]]}, "jobs[1][0][0]"),
    ("jobshop", {"jobs": [[[0, 1, 2]]]}, "jobs[0][0]"),
    ("jobshop", {"jobs": [[[0, 1.5]]]}, "jobs[0][0][1]"),
]


@pytest.mark.parametrize(("kind", "data", "field"), INVALID)
def test_invalid_payloads(kind: str, data: dict[str, Any], field: str | None) -> None:
    with pytest.raises(InvalidProblemError) as exc:
        problem_from_dict(kind, data)
    assert exc.value.field == field, str(exc.value)


def test_payload_must_be_mapping() -> None:
    with pytest.raises(InvalidProblemError):
        problem_from_dict("maxcut", [1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["maxcut", "qubo", "ising", "knapsack", "portfolio"])
def test_bad_assignments_raise(kind: str) -> None:
    p = problem_from_dict(kind, EXAMPLES[kind])
    with pytest.raises(InvalidProblemError) as exc:
        p.evaluate([0] * (p.num_variables + 1))
    assert exc.value.field == "assignment"
    with pytest.raises(InvalidProblemError) as exc:
        p.evaluate([2] + [0] * (p.num_variables - 1))
    assert exc.value.field == "assignment[0]"


# ---------------------------------------------------------------- evaluation semantics


def test_maxcut_evaluate() -> None:
    p = MaxCut.from_dict({"num_nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 2.5], [0, 2, -1.0]]})
    assert p.evaluate([0, 1, 0]).objective == 3.5
    assert p.evaluate([0, 0, 1]).objective == 1.5
    assert p.evaluate([1, 1, 1]).objective == 0.0


def test_knapsack_evaluate_reports_violation() -> None:
    p = Knapsack.from_dict(EXAMPLES["knapsack"])
    ok = p.evaluate([0, 1])
    assert ok.feasible and ok.objective == 2.0
    bad = p.evaluate([1, 1])
    assert not bad.feasible and bad.objective == 3.0
    assert "exceeds capacity 2 by 1" in bad.violations[0]


def test_portfolio_evaluate() -> None:
    p = Portfolio.from_dict(EXAMPLES["portfolio"])
    ev = p.evaluate([0, 1])
    assert ev.feasible
    assert ev.objective == pytest.approx(0.5 * 0.2 - 0.2)
    bad = p.evaluate([1, 1])
    assert not bad.feasible and "selected 2 assets" in bad.violations[0]


def test_jobshop_evaluate() -> None:
    p = JobShop.from_dict(EXAMPLES["jobshop"])
    assert not p.quantum_encodable
    assert p.num_variables == 4
    # Job 0: m0 [0,2) m1 [2,5); job 1: m1 [0,1) m0 [2,4).
    ev = p.evaluate([0, 2, 0, 2])
    assert ev.feasible and ev.objective == 5.0
    overlap = p.evaluate([0, 2, 0, 1])
    assert not overlap.feasible and any("overlaps" in v for v in overlap.violations)
    order = p.evaluate([0, 1, 0, 2])
    assert not order.feasible and any("before op 0 ends" in v for v in order.violations)
    neg = p.evaluate([-1, 2, 0, 2])
    assert not neg.feasible
    with pytest.raises(InvalidProblemError):
        p.evaluate([0, 2, 0])
    with pytest.raises(InvalidProblemError):
        p.evaluate([0, 2, 0, 2.5])  # type: ignore[list-item]


def test_jobshop_is_classical_only() -> None:
    p = JobShop.from_dict(EXAMPLES["jobshop"])
    with pytest.raises(NotEligibleError):
        p.to_qubo()
    with pytest.raises(NotEligibleError):
        p.num_qubits()


# ---------------------------------------------------------------- QUBO encodings


@pytest.mark.parametrize("seed", range(3))
def test_unconstrained_qubo_energy_equals_objective(seed: int) -> None:
    rng = random.Random(seed)
    cases = ((rand_maxcut(rng, 7), -1.0), (rand_qubo(rng, 7), 1.0), (rand_ising(rng, 7), 1.0))
    for p, sign in cases:
        enc = p.to_qubo()
        assert enc.num_problem_vars == p.num_variables == enc.qubo.num_variables
        for x in all_bits(p.num_variables):
            assert enc.qubo.energy(x) == pytest.approx(sign * p.evaluate(x).objective, abs=1e-9)


def test_ising_matches_qubo_to_ising_convention() -> None:
    rng = random.Random(7)
    q = rand_qubo(rng, 5)
    h, j, off = q.qubo.to_ising()
    ising = IsingProblem(
        h=tuple(float(v) for v in h),
        couplings=tuple((a, b, v) for (a, b), v in j.items()),
        offset=off,
    )
    for x in all_bits(5):
        assert ising.evaluate(x).objective == pytest.approx(q.evaluate(x).objective, abs=1e-9)


@pytest.mark.parametrize("capacity", [0, 1, 2, 3, 5, 6, 7, 8, 13, 100])
def test_slack_coefficients_cover_exactly_zero_to_capacity(capacity: int) -> None:
    coeffs = slack_coefficients(capacity)
    sums = {
        sum(c for c, b in zip(coeffs, bits, strict=True) if b) for bits in all_bits(len(coeffs))
    }
    assert sums == set(range(capacity + 1))
    assert len(coeffs) == capacity.bit_length()


def _qubo_minimizers(p: Problem) -> tuple[float, list[tuple[int, ...]]]:
    enc = p.to_qubo()
    n = enc.qubo.num_variables
    bits = np.array(all_bits(n), dtype=np.int8)
    e = enc.qubo.energies(bits)
    best = float(e.min())
    tol = 1e-9 * max(1.0, abs(best))
    return best, [enc.decode(tuple(int(b) for b in row)) for row in bits[e <= best + tol]]


@pytest.mark.parametrize("seed", range(5))
def test_knapsack_qubo_minimizers_are_constrained_optima(seed: int) -> None:
    rng = random.Random(100 + seed)
    n = rng.randint(4, 7)
    p = rand_knapsack(rng, n, capacity=rng.randint(0, 31))
    assert p.num_qubits() <= 12
    opt = brute_force(p)
    energy, decoded = _qubo_minimizers(p)
    assert energy == pytest.approx(-opt, abs=1e-7)
    for x in decoded:
        ev = p.evaluate(x)
        assert ev.feasible
        assert ev.objective == pytest.approx(opt, abs=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_portfolio_qubo_minimizers_are_constrained_optima(seed: int) -> None:
    rng = random.Random(200 + seed)
    p = rand_portfolio(rng, rng.randint(4, 10))
    opt = brute_force(p)
    energy, decoded = _qubo_minimizers(p)
    assert energy == pytest.approx(opt, abs=1e-7)
    for x in decoded:
        ev = p.evaluate(x)
        assert ev.feasible
        assert ev.objective == pytest.approx(opt, abs=1e-7)


def test_knapsack_zero_capacity_has_no_slack() -> None:
    p = Knapsack.from_dict({"values": [1.0, 2.0], "weights": [1, 1], "capacity": 0})
    assert p.num_qubits() == 2
    _, decoded = _qubo_minimizers(p)
    assert decoded == [(0, 0)]


# ---------------------------------------------------------------- limits


def test_limits() -> None:
    p = rand_maxcut(random.Random(1), 10, p=1.0)
    check_limits(p, Limits())
    with pytest.raises(ProblemTooLargeError) as exc:
        check_limits(p, Limits(max_variables=9))
    assert exc.value.field == "num_variables"
    with pytest.raises(ProblemTooLargeError) as exc:
        check_limits(p, Limits(max_edges=10))
    assert exc.value.field == "edges"
    k = Knapsack.from_dict({"values": [1.0] * 4, "weights": [1] * 4, "capacity": 1000})
    with pytest.raises(ProblemTooLargeError) as exc:
        check_limits(k, Limits(max_qubits=13))
    assert exc.value.field == "num_qubits"
    check_limits(k, Limits(max_qubits=14))
    with pytest.raises(ProblemTooLargeError) as exc:
        check_limits(k, Limits(max_knapsack_capacity=999))
    assert exc.value.field == "capacity"
    j = rand_jobshop(random.Random(1), 3, 3)
    check_limits(j, Limits(max_qubits=1))  # classical-only: no qubit limit
    with pytest.raises(ProblemTooLargeError):
        check_limits(j, Limits(max_jobshop_operations=8))
    with pytest.raises(ProblemTooLargeError):
        check_limits(j, Limits(max_jobshop_horizon=2))
    # Too large is still invalid input (fail fast, never retried).
    assert issubclass(ProblemTooLargeError, InvalidProblemError)


# ---------------------------------------------------------------- vectorised triples

_ODD_VALUES = st.sampled_from(
    [
        True,
        False,
        None,
        "1",
        2**70,
        -(2**70),
        10**400,
        float("nan"),
        float("inf"),
        1e101,
        np.int64(1),
        np.float64(0.5),
        -0.0,
        [1],
        (1, 2),
    ]
)


@st.composite
def _triples(draw: st.DrawFn) -> tuple[int, list[Any]]:
    n = draw(st.integers(1, 6))
    index = st.integers(-1, n) if draw(st.booleans()) else st.integers(0, n - 1)
    value = st.one_of(st.integers(-3, 3), st.floats(-2.0, 2.0), st.sampled_from([0.5, -0.5]))
    if draw(st.booleans()):
        index, value = st.one_of(index, _ODD_VALUES), st.one_of(value, _ODD_VALUES)
    triple = st.tuples(index, index, value).map(list) | st.tuples(index, index, value)
    ragged = st.lists(st.integers(0, n - 1), min_size=0, max_size=4)
    items = st.lists(triple | ragged if draw(st.booleans()) else triple, max_size=12)
    return n, draw(items)


def _outcome(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return ("ok", list(fn(*args, **kw).items()))
    except InvalidProblemError as exc:
        return ("error", exc.field, str(exc))


@settings(max_examples=400, deadline=None)
@given(_triples(), st.booleans(), st.sampled_from(["numpy", "python"]))
def test_vectorised_triples_match_the_element_wise_checks(
    case: tuple[int, list[Any]], diagonal: bool, fast_path: str
) -> None:
    # Both fast paths (numpy for large inputs, a Python loop for small ones) give the
    # element-wise pass's result: same pairs, same summed values bit for bit (duplicates
    # summed in input order), same order, and on invalid input the same error with the
    # same field path (the fast paths refuse, the element-wise pass names the field).
    from qbridge.problems import _validation as v

    n, items = case
    fast_checks = v._valid_triples if fast_path == "numpy" else v._valid_triples_small

    def fast_then_elementwise(
        seq: list[Any], n: int, where: str, *, allow_diagonal: bool
    ) -> dict[tuple[int, int], float]:
        got = fast_checks(seq, n, allow_diagonal=allow_diagonal)
        if got is not None:
            return got
        return v._triples_elementwise(seq, n, where, allow_diagonal=allow_diagonal)

    fast = _outcome(fast_then_elementwise, items, n, "edges", allow_diagonal=diagonal)
    slow = _outcome(v._triples_elementwise, items, n, "edges", allow_diagonal=diagonal)
    public = _outcome(v.index_triples, items, n, "edges", allow_diagonal=diagonal)
    assert repr(fast) == repr(slow) == repr(public)


def test_both_fast_paths_accept_valid_triples_either_side_of_the_size_switch() -> None:
    # The size switch itself: a valid input on either side of the threshold is accepted
    # by the fast path meant for it, with the same normalized result.
    from qbridge.problems import _validation as v

    n = 50
    items = [[k % n, (k * 7 + 1) % n, float(k % 5) - 2.0] for k in range(v.SMALL_TRIPLES + 1)]
    items = [t for t in items if t[0] != t[1]]
    small, large = items[: v.SMALL_TRIPLES], items + items[:5]
    assert len(large) > v.SMALL_TRIPLES
    for seq in (small, large):
        expected = v._triples_elementwise(seq, n, "e", allow_diagonal=False)
        assert v._valid_triples_small(seq, n, allow_diagonal=False) == expected
        assert v._valid_triples(seq, n, allow_diagonal=False) == expected
        assert v.index_triples(seq, n, "e", allow_diagonal=False) == expected


def test_vectorised_triples_sum_duplicates_and_drop_zero_sums() -> None:
    edges = [(2, 0, 1.5), (0, 2, -1.5), (1, 0, 0.25), (0, 1, 0.5), (3, 1, -0.0), (1, 3, 2)]
    assert MaxCut(4, tuple(edges)).edges == ((0, 1, 0.75), (1, 3, 2.0))
