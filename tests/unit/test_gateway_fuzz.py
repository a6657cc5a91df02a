"""Fuzzing the gateway's request conversion with hypothesis (issue 11).

Random requests as a hostile or careless client could send them (every typed branch
with extreme numbers and sizes, JSON payloads of any shape, arbitrary bytes decoded as
a ``SolveRequest``) go through :meth:`gateway.jobs.JobFactory.prepare` and the servicer's
error mapping: each one is accepted or refused with a typed error (INVALID_ARGUMENT or
PERMISSION_DENIED), never INTERNAL. ``QBRIDGE_FUZZ_EXAMPLES`` raises the count (the
``make fuzz`` variable of the other fuzz targets).
"""

from __future__ import annotations

import json
import os
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.jobs import JobFactory
from gateway.service import error_status
from qbridge.contracts import AvroCodec, default_registry
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.problems.limits import Limits
from qbridge.validation.accept import RequestBounds

EXAMPLES = int(os.environ.get("QBRIDGE_FUZZ_EXAMPLES", "10000"))
"""Inputs in all: half structured requests, half arbitrary wire bytes (the latter are cheap:
10,000 in all stay near 30 s of CPU in ``make test``)."""
TYPED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}

JOBS = JobFactory(
    Limits(max_variables=64, max_edges=400),
    RequestBounds(),
    known_backends=["aer_statevector", "ibm_runtime"],
    premium_backends=["ibm_runtime"],
    codec=AvroCodec(default_registry()),
    max_request_bytes=200_000,
)

I32 = st.integers(-(2**31), 2**31 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
SMALL = st.integers(-3, 70)
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e3, 1e3),
    st.sampled_from([1e308, -1e308, 1.7e308, 5e-324, 0.0, -0.0, 1e154, 2.0**63]),
)
SIZES = st.one_of(SMALL, I32)


def _terms(i: st.SearchStrategy[int]) -> st.SearchStrategy[list[pb.QuadraticTerm]]:
    return st.lists(st.builds(pb.QuadraticTerm, i=i, j=i, value=NUMBER), max_size=12)


MAXCUT = st.builds(
    lambda n, edges: pb.Problem(maxcut=pb.MaxCut(num_nodes=n, edges=edges)),
    SIZES,
    st.lists(st.builds(pb.WeightedEdge, u=SMALL, v=SMALL, weight=NUMBER), max_size=8),
)
QUBO = st.builds(
    lambda n, lin, quad, off: pb.Problem(
        qubo=pb.Qubo(num_variables=n, linear=lin, quadratic=quad, offset=off)
    ),
    SIZES,
    st.lists(NUMBER, max_size=10),
    _terms(SMALL),
    NUMBER,
)
ISING = st.builds(
    lambda h, c, off: pb.Problem(ising=pb.Ising(h=h, couplings=c, offset=off)),
    st.lists(NUMBER, max_size=10),
    _terms(SMALL),
    NUMBER,
)
KNAPSACK = st.builds(
    lambda v, w, c: pb.Problem(knapsack=pb.Knapsack(values=v, weights=w, capacity=c)),
    st.lists(NUMBER, max_size=10),
    st.lists(st.one_of(st.integers(-5, 100), I64), max_size=10),
    st.one_of(st.integers(-5, 1000), I64),
)
PORTFOLIO = st.builds(
    lambda mu, cov, b, ra: pb.Problem(
        portfolio=pb.Portfolio(
            expected_returns=mu,
            covariance=[pb.Row(values=r) for r in cov],
            budget=b,
            **({} if ra is None else {"risk_aversion": ra}),
        )
    ),
    st.lists(NUMBER, max_size=6),
    st.lists(st.lists(NUMBER, max_size=6), max_size=6),
    SIZES,
    st.none() | NUMBER,
)
JOBSHOP = st.builds(
    lambda jobs: pb.Problem(
        jobshop=pb.JobShop(
            jobs=[
                pb.JobShop.Job(
                    operations=[pb.JobShop.Operation(machine=m, duration=d) for m, d in ops]
                )
                for ops in jobs
            ]
        )
    ),
    st.lists(
        st.lists(st.tuples(SMALL, st.one_of(st.integers(-2, 50), I64)), max_size=4), max_size=4
    ),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
JSON_KEYS = st.sampled_from(
    ["num_nodes", "edges", "linear", "quadratic", "h", "J", "values", "weights", "capacity",
     "expected_returns", "covariance", "budget", "risk_aversion", "jobs", "offset",
     "num_variables", "samples", "labels"]
)  # fmt: skip
JSON_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(json.dumps, JSON_VALUES),
    st.builds(json.dumps, st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=6)),
    st.integers(1, 5000).map(lambda d: "[" * d + "]" * d),
    st.sampled_from(['{"num_nodes": 2, "edges": [[0, 1, 1e308], [0, 1, 1e308]]}', "NaN", "{"]),
)
JSON_PROBLEM = st.builds(
    lambda t, text: pb.Problem(json=pb.JsonProblem(type=t, json=text)),
    st.sampled_from(["maxcut", "qubo", "ising", "knapsack", "portfolio", "jobshop", "x", ""]),
    JSON_TEXT,
)
PROBLEM = st.one_of(MAXCUT, QUBO, ISING, KNAPSACK, PORTFOLIO, JOBSHOP, JSON_PROBLEM)


@st.composite
def options(draw: st.DrawFn) -> pb.JobOptions:
    opts = pb.JobOptions(
        idempotency_key=draw(st.text(max_size=10)),
        fallback_policy=draw(st.sampled_from(["", "auto", "classical_only", "bogus"])),
        correlation_id=draw(st.text(max_size=6)),
        tags=draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)),
        backend=draw(st.sampled_from(["", "aer_statevector", "ibm_runtime", "nope", " "])),
    )
    for name, strategy in (
        ("priority", I32),
        ("shot_budget", I64),
        ("seed", I64),
        ("timeout_ms", I64),
    ):
        if draw(st.booleans()):
            setattr(opts, name, draw(strategy))
    return opts


def _outcome(problem: pb.Problem, opts: pb.JobOptions, timeout_ms: int) -> None:
    """Prepare the request; any exception must map to a typed status."""
    try:
        JOBS.prepare("fuzz", problem, opts, timeout_ms=timeout_ms, call="submit")
    except Exception as exc:
        code, _message, detail = error_status(exc)
        assert code in TYPED, f"{type(exc).__name__}: {exc!r} would be {code.name}"
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert detail.field, f"no field in {exc!r}"


FUZZ = settings(
    max_examples=max(1, EXAMPLES // 2),
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@FUZZ
@given(PROBLEM, options(), st.one_of(st.integers(1, 100_000), I64))
def test_structured_requests_are_accepted_or_typed_errors(
    problem: pb.Problem, opts: pb.JobOptions, timeout_ms: int
) -> None:
    _outcome(problem, opts, timeout_ms)


@settings(FUZZ, max_examples=max(1, EXAMPLES - EXAMPLES // 2))
@given(st.binary(max_size=300))
def test_arbitrary_wire_bytes_are_accepted_or_typed_errors(data: bytes) -> None:
    try:
        req = pb.SolveRequest.FromString(data)
    except DecodeError:
        return  # gRPC's own deserialization failure: never reaches the conversion
    _outcome(req.problem, req.options, 5000)


def test_hostile_shapes_stay_typed() -> None:
    """Deep nesting and overflowing magnitudes (regression corpus)."""
    edge = pb.WeightedEdge(u=0, v=1, weight=1e308)
    cases: list[Any] = [
        pb.Problem(json=pb.JsonProblem(type="maxcut", json="[" * 50_000 + "]" * 50_000)),
        pb.Problem(json=pb.JsonProblem(type="qubo", json='{"linear": [1e308, 1e308]}')),
        pb.Problem(maxcut=pb.MaxCut(num_nodes=3, edges=[edge] * 3)),
        pb.Problem(
            knapsack=pb.Knapsack(values=[1.0, 1.0], weights=[2**62, 2**62], capacity=2**63 - 1)
        ),
    ]
    for problem in cases:
        _outcome(problem, pb.JobOptions(), 5000)
