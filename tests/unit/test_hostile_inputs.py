"""Hostile problem inputs: sizes refused before expensive work, overflow, 2^63, NUL, deep JSON.

Every rejection is a typed ``InvalidProblemError`` (invalid input), never an INTERNAL
``OverflowError``, ``RecursionError`` or a database error later in the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qbridge.cli.files import ProblemFileError, load
from qbridge.errors import InvalidProblemError, ProblemTooLargeError
from qbridge.problems import Knapsack, Limits, MaxCut, Portfolio, Qubo, problem_from_dict
from qbridge.problems import maxcut as maxcut_module
from qbridge.problems import portfolio as portfolio_module
from qbridge.problems.payload import MAX_JSON_DEPTH, json_depth, parse_json
from qbridge.solvers.heuristics import knapsack_greedy
from qbridge.validation.accept import InvalidRequestError, accept
from tests.unit.test_intake import NOW, request


def _forbid(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} ran before the size checks")

    monkeypatch.setattr(module, name, boom)


def test_portfolio_size_is_checked_before_the_eigendecomposition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forbid(monkeypatch, portfolio_module.np.linalg, "eigvalsh")
    n = 40
    problem = {
        "expected_returns": [0.1] * n,
        "covariance": np.eye(n).tolist(),
        "budget": 2,
        "risk_aversion": 1.0,
    }
    with pytest.raises(ProblemTooLargeError) as info:
        accept(request("portfolio", problem=problem), NOW, Limits(max_variables=10))
    assert info.value.field == "problem.num_variables"
    with pytest.raises(ProblemTooLargeError):
        problem_from_dict("portfolio", problem, Limits(max_edges=100))


def test_maxcut_edge_count_is_checked_before_the_edges_are_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forbid(monkeypatch, maxcut_module, "index_triples")
    edges = [{"u": 0, "v": 1, "weight": 1.0}] * 5000
    with pytest.raises(ProblemTooLargeError, match="quadratic terms 5000 exceeds the limit 1000"):
        accept(
            request("maxcut", problem={"num_nodes": 2, "edges": edges}),
            NOW,
            Limits(max_edges=1000),
        )


def test_huge_declared_sizes_are_refused_without_allocating() -> None:
    with pytest.raises(InvalidProblemError, match="must be <= 16777216") as info:
        problem_from_dict("qubo", {"num_variables": 10**18})  # linear defaults to zeros
    assert info.value.field == "num_variables"
    with pytest.raises(InvalidProblemError, match="must be <= 16777216"):
        MaxCut(num_nodes=2**62, edges=())


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("maxcut", {"num_nodes": 2, "edges": [[0, 1, 1e300]]}, "edges[0][2]"),
        ("maxcut", {"num_nodes": 2, "edges": [[0, 1, 10**400]]}, "edges[0][2]"),
        ("knapsack", {"values": [1e308, 1e308], "weights": [1, 1], "capacity": 2}, "values[0]"),
        ("qubo", {"num_variables": 1, "offset": -1e101}, "offset"),
        (
            "portfolio",
            {"expected_returns": [0.1], "covariance": [[1.0]], "budget": 1, "risk_aversion": 1e200},
            "risk_aversion",
        ),
    ],
)
def test_finite_values_that_would_overflow_are_rejected(
    kind: str, payload: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidProblemError, match="magnitude must be at most 1e\\+100") as info:
        problem_from_dict(kind, payload)
    assert info.value.field == field


def test_the_largest_accepted_values_never_reach_inf() -> None:
    big = 1e100
    knap = Knapsack(values=[big] * 20, weights=[2**48] * 20, capacity=2**53)
    assert np.isfinite(knap.penalty)
    enc = knap.to_qubo().qubo
    assert all(np.isfinite(v) for v in (*enc.linear, *enc.quadratic.values(), enc.offset))
    port = Portfolio(
        expected_returns=[big, -big],
        covariance=[[big, -big], [-big, big]],
        budget=1,
        risk_aversion=big,
    )
    enc = port.to_qubo().qubo
    assert all(np.isfinite(v) for v in (*enc.linear, *enc.quadratic.values(), enc.offset))


def test_qubo_terms_summing_to_inf_are_a_typed_error() -> None:
    with pytest.raises(InvalidProblemError, match="overflow to infinity"):
        Qubo.build(2, [0.0, 0.0], [(0, 1, 1.7e308), (1, 0, 1.7e308)])


def test_knapsack_weights_near_2_63_are_refused() -> None:
    with pytest.raises(InvalidProblemError, match="must be <= 9007199254740992") as info:
        Knapsack(values=[1.0, 1.0], weights=[2**63 - 1, 1], capacity=2**63 - 1)
    assert info.value.field == "weights[0]"
    with pytest.raises(InvalidProblemError, match="weights sum to") as info:
        Knapsack(values=[1.0] * 3, weights=[2**52] * 3, capacity=10)
    assert info.value.field == "weights"
    with pytest.raises(InvalidProblemError) as info:
        Knapsack(values=[1.0], weights=[1], capacity=2**63)
    assert info.value.field == "capacity"


def test_knapsack_greedy_does_not_wrap_at_the_largest_accepted_weights() -> None:
    problem = Knapsack(values=[3.0, 2.0, 1.0], weights=[2**52, 2**51, 2**51], capacity=2**53)
    best, _ = knapsack_greedy(problem).solutions[0]
    ev = problem.evaluate(best)
    assert ev.feasible and ev.objective == 6.0


def test_jobshop_durations_are_bounded() -> None:
    with pytest.raises(InvalidProblemError, match="durations sum to"):
        problem_from_dict("jobshop", {"jobs": [[[0, 2**53]], [[1, 2**53]]]})


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ({"team": "a\x00b"}, "tags.team"),
        ({"te\x00am": "x"}, "tags"),
        ({"t\nx": "x"}, "tags"),
    ],
)
def test_nul_and_control_characters_in_tags_are_rejected(tags: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        accept(request(tags=tags), NOW, Limits())
    assert info.value.field == field


def test_nul_in_identifiers_is_rejected() -> None:
    for name in ("request_id", "tenant", "idempotency_key", "correlation_id"):
        with pytest.raises(InvalidRequestError) as info:
            accept(request(**{name: "a\x00b"}), NOW, Limits())
        assert info.value.field == name


def test_deeply_nested_json_is_a_typed_error(tmp_path: Path) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    with pytest.raises(InvalidProblemError, match="nested 200000 levels deep"):
        parse_json(deep)
    with pytest.raises(InvalidProblemError, match="not valid JSON"):
        parse_json('{"a": [1, Infinity]}')
    assert json_depth('{"s": "[[[[[[", "a": [[1]]}') == 3
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    path = tmp_path / "deep.json"
    path.write_text('{"type": "maxcut", "problem": ' + deep + "}")
    with pytest.raises(ProblemFileError, match="levels deep"):
        load(path)


def test_findings_of_the_intake_fuzzer_are_typed_errors() -> None:
    # An unhashable fallback policy; a problem record whose items are not records.
    with pytest.raises(InvalidRequestError) as info:
        accept(request(fallback_policy=["auto"]), NOW, Limits())
    assert info.value.field == "fallback_policy"
    with pytest.raises(InvalidProblemError, match="not a valid maxcut record") as err:
        accept(request(problem={"num_nodes": 2, "edges": [[0, 1, 1.0]]}), NOW, Limits())
    assert err.value.field == "problem"
