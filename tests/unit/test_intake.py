"""intake's domain: accept() on valid and invalid requests of every problem type, dedup ids."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from intake.app import IntakeApp, writer_version
from intake.dedup import RecentlyAccepted, Seen
from qbridge.bus import Record
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec, FileSchemaRegistry
from qbridge.contracts.convert import problem_from_avro
from qbridge.contracts.registry import registry_file
from qbridge.errors import ErrorClass, InvalidProblemError, ProblemTooLargeError, classify
from qbridge.problems.limits import Limits
from qbridge.topics import JOBS_ACCEPTED
from qbridge.validation.accept import (
    JOB_NAMESPACE,
    InvalidRequestError,
    RequestBounds,
    accept,
    avro_field_path,
    job_id_for,
    num_qubits,
    seed_from_fingerprint,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CREATED = datetime(2026, 3, 1, 11, 59, 59, tzinfo=UTC)

PROBLEMS: dict[str, dict[str, Any]] = {
    "maxcut": {
        "num_nodes": 4,
        "edges": [
            {"u": 1, "v": 0, "weight": 1.0},
            {"u": 1, "v": 2, "weight": 2.0},
            {"u": 2, "v": 3, "weight": 1.5},
            {"u": 0, "v": 1, "weight": 0.5},  # parallel edge: merged with 1-0
        ],
    },
    "qubo": {
        "num_variables": 3,
        "linear": [1.0, -2.0, 0.5],
        "quadratic": [{"i": 2, "j": 0, "value": 1.0}, {"i": 1, "j": 1, "value": -1.0}],
        "offset": 0.25,
    },
    "ising": {
        "h": [0.5, -0.5, 0.0],
        "couplings": [{"i": 0, "j": 1, "value": 1.0}, {"i": 2, "j": 1, "value": -1.0}],
        "offset": 0.0,
    },
    "knapsack": {"values": [10.0, 5.0, 8.0], "weights": [5, 3, 4], "capacity": 7},
    "portfolio": {
        "expected_returns": [0.1, 0.2, 0.15],
        "covariance": [[0.1, 0.01, 0.0], [0.01, 0.2, 0.02], [0.0, 0.02, 0.15]],
        "budget": 2,
        "risk_aversion": 0.5,
    },
    "jobshop": {
        "jobs": [
            [{"machine": 0, "duration": 3}, {"machine": 1, "duration": 2}],
            [{"machine": 1, "duration": 2}, {"machine": 0, "duration": 1}],
        ]
    },
}


def request(problem_type: str = "maxcut", **overrides: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "request_id": "req-1",
        "idempotency_key": None,
        "tenant": "acme",
        "problem_type": problem_type,
        "problem": PROBLEMS[problem_type],
        "timeout_ms": 30_000,
        "fallback_policy": "auto",
        "priority": 5,
        "shot_budget": None,
        "seed": None,
        "correlation_id": None,
        "tags": {},
        "created_at": CREATED,
    }
    req.update(overrides)
    return req


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(FileSchemaRegistry(registry_file()))


def reject(req: dict[str, Any], **kwargs: Any) -> InvalidProblemError:
    with pytest.raises(InvalidProblemError) as info:
        accept(req, NOW, Limits(), **kwargs)
    assert classify(info.value) is ErrorClass.INVALID_INPUT
    return info.value


# --- valid requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem_type", "shape", "length", "qubits"),
    [
        ("maxcut", "binary", 4, 4),
        ("qubo", "binary", 3, 3),
        ("ising", "binary", 3, 3),
        ("knapsack", "binary", 3, 3 + 3),  # capacity 7: three slack bits
        ("portfolio", "binary", 3, 3),
        ("jobshop", "integer", 4, None),
    ],
)
def test_accepts_every_problem_type(
    codec: AvroCodec, problem_type: str, shape: str, length: int, qubits: int | None
) -> None:
    env = accept(request(problem_type), NOW, Limits(), schema_version=2)
    problem = problem_from_avro(problem_type, PROBLEMS[problem_type])
    assert env["problem_type"] == problem_type
    assert env["output_shape"] == {"kind": shape, "length": length}
    assert env["num_variables"] == length
    assert env["num_qubits"] == qubits
    assert env["input_fingerprint"] == problem.fingerprint()
    assert env["idempotency_key"] == problem.fingerprint()
    assert env["job_id"] == job_id_for("acme", problem.fingerprint())
    assert env["seed"] == seed_from_fingerprint(problem.fingerprint())
    assert env["schema_version"] == 2
    assert env["correlation_id"] == "req-1"  # defaults to the request id
    assert env["accepted_at"] == NOW.replace(microsecond=123000)  # Avro millis
    assert env["deadline_at"] == env["accepted_at"] + timedelta(milliseconds=30_000)
    assert env["created_at"] == CREATED
    # The envelope is a valid JobEnvelope and survives the wire unchanged.
    decoded = codec.decode(codec.encode(JOBS_ACCEPTED.record, env)).value
    assert decoded["job_id"] == env["job_id"]
    assert decoded["deadline_at"] == env["deadline_at"]
    assert (
        problem_from_avro(problem_type, decoded["problem"]).fingerprint()
        == env["input_fingerprint"]
    )


def test_envelope_carries_the_normalized_problem() -> None:
    env = accept(request("maxcut"), NOW, Limits())
    name, record = env["problem"]
    assert name == "qbridge.MaxCutProblem"
    # 1-0 and 0-1 merged (1.0 + 0.5), endpoints ordered, edges sorted.
    assert record["edges"] == [
        {"u": 0, "v": 1, "weight": 1.5},
        {"u": 1, "v": 2, "weight": 2.0},
        {"u": 2, "v": 3, "weight": 1.5},
    ]


def test_request_fields_are_carried() -> None:
    env = accept(
        request(
            "qubo",
            idempotency_key="order-42",
            fallback_policy="race",
            priority=9,
            shot_budget=4096,
            seed=123,
            correlation_id="corr-9",
            tags={"team": "ops"},
            timeout_ms=5_000,
        ),
        NOW,
        Limits(),
    )
    assert env["idempotency_key"] == "order-42"
    assert env["job_id"] == job_id_for("acme", "order-42")
    assert env["fallback_policy"] == "race"
    assert env["priority"] == 9
    assert env["shot_budget"] == 4096
    assert env["seed"] == 123
    assert env["correlation_id"] == "corr-9"
    assert env["tags"] == {"team": "ops"}
    assert env["timeout_ms"] == 5_000
    assert env["deadline_at"] - env["accepted_at"] == timedelta(seconds=5)


def test_knapsack_qubit_count_matches_the_encoding() -> None:
    for capacity in (0, 1, 2, 7, 8, 100, 1023, 1024):
        p = problem_from_avro(
            "knapsack", {"values": [1.0, 2.0], "weights": [1, 2], "capacity": capacity}
        )
        assert num_qubits(p) == p.num_qubits()


# --- deterministic ids ----------------------------------------------------------------------


def test_duplicate_requests_map_to_the_same_job_id() -> None:
    a = accept(request(request_id="a"), NOW, Limits())
    b = accept(request(request_id="b"), NOW + timedelta(minutes=5), Limits())
    assert a["job_id"] == b["job_id"]
    assert a["input_fingerprint"] == b["input_fingerprint"]
    assert a["seed"] == b["seed"]


def test_equal_problems_written_differently_share_the_job_id() -> None:
    reordered = {
        "num_nodes": 4,
        "edges": [
            {"u": 3, "v": 2, "weight": 1.5},
            {"u": 0, "v": 1, "weight": 1.5},
            {"u": 2, "v": 1, "weight": 2.0},
        ],
    }
    a = accept(request(), NOW, Limits())
    b = accept(request(problem=reordered), NOW, Limits())
    assert a["job_id"] == b["job_id"]


def test_job_id_depends_on_tenant_and_key_only() -> None:
    base = accept(request(idempotency_key="k1"), NOW, Limits())
    other_problem = accept(request("qubo", idempotency_key="k1"), NOW, Limits())
    other_tenant = accept(request(idempotency_key="k1", tenant="globex"), NOW, Limits())
    other_key = accept(request(idempotency_key="k2"), NOW, Limits())
    no_key = accept(request(), NOW, Limits())
    assert other_problem["job_id"] == base["job_id"]
    assert len({base["job_id"], other_tenant["job_id"], other_key["job_id"], no_key["job_id"]}) == 4


def test_job_id_is_a_stable_uuid5() -> None:
    job_id = job_id_for("acme", "k")
    assert uuid.UUID(job_id).version == 5
    assert job_id == str(uuid.uuid5(JOB_NAMESPACE, '["acme", "k"]'))
    # The separator cannot be forged by moving characters between tenant and key.
    assert job_id_for("a", "b:c") != job_id_for("a:b", "c")


def test_derived_seed_fits_31_bits() -> None:
    assert seed_from_fingerprint("f" * 64) == 0x7FFF_FFFF
    assert seed_from_fingerprint("0" * 64) == 0


# --- invalid problems: typed errors with request-level field paths --------------------------


def _maxcut(edges: list[Any], n: int = 3) -> dict[str, Any]:
    return {"num_nodes": n, "edges": edges}


@pytest.mark.parametrize(
    ("problem_type", "problem", "field", "message"),
    [
        ("maxcut", _maxcut([{"u": 0, "v": 1, "weight": math.nan}]), "problem.edges[0].weight",
         "finite"),
        ("maxcut", _maxcut([{"u": 0, "v": 1, "weight": math.inf}]), "problem.edges[0].weight",
         "finite"),
        ("maxcut", _maxcut([{"u": 0, "v": 1, "weight": 1.0}, {"u": 0, "v": 5, "weight": 1.0}]),
         "problem.edges[1].v", "out of range"),
        ("maxcut", _maxcut([{"u": 2, "v": 2, "weight": 1.0}]), "problem.edges[0]", "self-loop"),
        ("maxcut", _maxcut([], n=0), "problem.num_nodes", ">= 1"),
        ("qubo", {"num_variables": 2, "linear": [1.0], "quadratic": [], "offset": 0.0},
         "problem.linear", "expected 2"),
        ("qubo", {"num_variables": 2, "linear": [1.0, 2.0],
                  "quadratic": [{"i": 0, "j": -1, "value": 1.0}], "offset": 0.0},
         "problem.quadratic[0].j", "out of range"),
        ("qubo", {"num_variables": 1, "linear": [1.0], "quadratic": [], "offset": math.nan},
         "problem.offset", "finite"),
        ("ising", {"h": [], "couplings": [], "offset": 0.0}, "problem.h", "at least one"),
        ("ising", {"h": [0.0, 1.0], "couplings": [{"i": 0, "j": 1, "value": math.nan}],
                   "offset": 0.0},
         "problem.couplings[0].value", "finite"),
        ("knapsack", {"values": [1.0, -2.0], "weights": [1, 1], "capacity": 1},
         "problem.values[1]", ">= 0"),
        ("knapsack", {"values": [1.0, 2.0], "weights": [1, 0], "capacity": 1},
         "problem.weights[1]", ">= 1"),
        ("knapsack", {"values": [1.0, 2.0], "weights": [1], "capacity": 1},
         "problem.weights", "expected 2"),
        ("knapsack", {"values": [1.0], "weights": [1], "capacity": -1},
         "problem.capacity", ">= 0"),
        ("portfolio", {"expected_returns": [0.1, 0.2], "covariance": [[1.0, 0.5], [0.0, 1.0]],
                       "budget": 1, "risk_aversion": 1.0},
         "problem.covariance", "symmetric"),
        ("portfolio", {"expected_returns": [0.1, 0.2], "covariance": [[1.0, 2.0], [2.0, 1.0]],
                       "budget": 1, "risk_aversion": 1.0},
         "problem.covariance", "semidefinite"),
        ("portfolio", {"expected_returns": [0.1, 0.2], "covariance": [[1.0, 0.0], [0.0, 1.0]],
                       "budget": 3, "risk_aversion": 1.0},
         "problem.budget", "<= number of assets"),
        ("jobshop", {"jobs": [[{"machine": 0, "duration": 1}, {"machine": 1, "duration": 0}]]},
         "problem.jobs[0][1].duration", ">= 1"),
        ("jobshop", {"jobs": [[{"machine": -1, "duration": 1}]]},
         "problem.jobs[0][0].machine", ">= 0"),
        ("jobshop", {"jobs": []}, "problem.jobs", "at least one job"),
        ("jobshop", {"jobs": [[]]}, "problem.jobs[0]", "at least one operation"),
    ],
)  # fmt: skip
def test_invalid_problems_are_rejected_with_the_field_path(
    problem_type: str, problem: dict[str, Any], field: str, message: str
) -> None:
    err = reject(request(problem_type, problem=problem))
    assert type(err) is InvalidProblemError
    assert err.field == field
    assert message in str(err)
    assert str(err).startswith(f"{field}: ")


def test_problem_type_must_match_the_branch() -> None:
    err = reject(request("qubo", problem=PROBLEMS["maxcut"]))
    assert err.field == "problem"
    assert "maxcut" in str(err)


def test_unknown_problem_type() -> None:
    err = reject({**request("maxcut"), "problem_type": "tsp"})
    assert err.field == "problem_type"


def test_size_limits_are_enforced_with_the_field() -> None:
    limits = Limits(max_variables=3)
    with pytest.raises(ProblemTooLargeError) as info:
        accept(request("maxcut"), NOW, limits)
    assert info.value.field == "problem.num_variables"
    limits = Limits(max_edges=1)
    with pytest.raises(ProblemTooLargeError) as info:
        accept(request("ising"), NOW, limits)
    assert info.value.field == "problem.couplings"
    with pytest.raises(ProblemTooLargeError) as info:
        accept(request("knapsack"), NOW, Limits(max_qubits=5))
    assert info.value.field == "problem.num_qubits"
    with pytest.raises(ProblemTooLargeError) as info:
        accept(request("jobshop"), NOW, Limits(max_jobshop_operations=3))
    assert info.value.field == "problem.jobs"


def test_field_path_translation() -> None:
    assert avro_field_path("maxcut", "edges[3][2]") == "problem.edges[3].weight"
    assert avro_field_path("qubo", "quadratic[0][1]") == "problem.quadratic[0].j"
    assert avro_field_path("ising", "J") == "problem.couplings"
    assert avro_field_path("ising", "J[4]") == "problem.couplings[4]"
    assert avro_field_path("jobshop", "jobs[1][2][0]") == "problem.jobs[1][2].machine"
    assert avro_field_path("knapsack", "values[1]") == "problem.values[1]"
    assert avro_field_path("maxcut", None) == "problem"


# --- invalid request fields -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tenant": ""}, "tenant"),
        ({"tenant": "   "}, "tenant"),
        ({"tenant": "a\nb"}, "tenant"),
        ({"tenant": "x" * 300}, "tenant"),
        ({"request_id": ""}, "request_id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"timeout_ms": 99}, "timeout_ms"),
        ({"timeout_ms": 3_600_001}, "timeout_ms"),
        ({"fallback_policy": "quantum_first"}, "fallback_policy"),
        ({"fallback_policy": ""}, "fallback_policy"),
        ({"shot_budget": 0}, "shot_budget"),
        ({"shot_budget": -5}, "shot_budget"),
        ({"shot_budget": 10**12}, "shot_budget"),
        ({"seed": -1}, "seed"),
        ({"tags": {f"k{i}": "v" for i in range(65)}}, "tags"),
        ({"tags": {"": "v"}}, "tags"),
    ],
)
def test_invalid_request_fields(overrides: dict[str, Any], field: str) -> None:
    err = reject(request(**overrides))
    assert isinstance(err, InvalidRequestError)
    assert err.field == field


def test_timeout_bounds_come_from_settings() -> None:
    bounds = RequestBounds(min_timeout_ms=1_000, max_timeout_ms=10_000)
    assert accept(request(timeout_ms=1_000), NOW, Limits(), bounds=bounds)
    assert reject(request(timeout_ms=999), bounds=bounds).field == "timeout_ms"
    assert reject(request(timeout_ms=10_001), bounds=bounds).field == "timeout_ms"


def test_quantum_only_is_impossible_for_classical_only_types() -> None:
    err = reject(request("jobshop", fallback_policy="quantum_only"))
    assert err.field == "fallback_policy"
    assert "classical-only" in str(err)
    assert accept(request("jobshop", fallback_policy="classical_only"), NOW, Limits())


def test_every_fallback_policy_is_accepted() -> None:
    for policy in ("auto", "quantum_preferred", "classical_only", "quantum_only", "race"):
        assert accept(request(fallback_policy=policy), NOW, Limits())["fallback_policy"] == policy


# --- the in-process duplicate memory ----------------------------------------------------------


def test_recently_accepted_lru() -> None:
    lru = RecentlyAccepted(maxsize=2)
    assert lru.check("t", "a", "fp") is Seen.NEW
    lru.remember("t", "a", "fp")
    assert lru.check("t", "a", "fp") is Seen.DUPLICATE
    assert lru.check("t", "a", "other") is Seen.CONFLICT
    assert lru.check("u", "a", "fp") is Seen.NEW
    lru.remember("t", "b", "fp")
    lru.check("t", "a", "fp")  # touch a: b is now the oldest
    lru.remember("t", "c", "fp")
    assert len(lru) == 2
    assert lru.check("t", "b", "fp") is Seen.NEW
    assert lru.check("t", "a", "fp") is Seen.DUPLICATE
    off = RecentlyAccepted(0)
    off.remember("t", "a", "fp")
    assert off.check("t", "a", "fp") is Seen.NEW


# --- the edge, without Kafka ------------------------------------------------------------------


def test_writer_version_from_the_registry(codec: AvroCodec) -> None:
    assert writer_version(codec.registry, 1) == 1  # ProblemRequest v1
    assert writer_version(codec.registry, 8) == 2  # ProblemRequest v2
    assert writer_version(codec.registry, None) == 0


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], Any, list[tuple[str, bytes]]]] = []
        self.flushes = 0

    def send(self, topic: Any, value: Any, key: Any = None, headers: Any = None) -> None:
        self.sent.append((topic.name, value, key, list(headers or [])))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushes += 1


class _FakeConsumer:
    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec


def _record(
    value: dict[str, Any], headers: dict[str, bytes] | None = None, schema_id: int = 0
) -> Record:
    return Record(
        "requests", 0, 0, b"k", value, "qbridge.ProblemRequest", headers or {}, 0, schema_id
    )


def test_app_emits_keyed_envelopes_and_skips_exact_duplicates(codec: AvroCodec) -> None:
    producer = _FakeProducer()
    app = IntakeApp(
        _FakeConsumer(codec),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        JOBS_ACCEPTED,
        limits=Limits(),
        bounds=RequestBounds(),
        recent=RecentlyAccepted(100),
        clock=lambda: NOW,
    )
    incoming = {
        h.CORRELATION_ID: b"corr-up",
        h.TRACEPARENT: b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01",
    }
    app.handle(_record(request(correlation_id="corr-1"), incoming, schema_id=1))
    app.on_flushed()  # the consumer's batch flush made it durable
    app.handle(_record(request(request_id="again", correlation_id="corr-1")))  # duplicate
    app.handle(_record(request("qubo")))
    assert app.accepted == 2
    assert app.duplicates == 1
    assert [s[0] for s in producer.sent] == [JOBS_ACCEPTED.name] * 2
    _, env, key, headers = producer.sent[0]
    assert key == env["job_id"]
    assert env["schema_version"] == 1
    hdrs = dict(headers)
    assert hdrs[h.CORRELATION_ID] == b"corr-1"
    assert hdrs[h.JOB_ID] == env["job_id"].encode()
    assert hdrs[h.TRACEPARENT].startswith(b"00-" + b"a" * 32)  # same trace, child span
    assert hdrs[h.TRACEPARENT] != incoming[h.TRACEPARENT]
    assert producer.flushes == 0  # the consumer flushes once per batch, then on_flushed()


def test_app_raises_invalid_input_for_the_consumer_to_dead_letter(codec: AvroCodec) -> None:
    producer = _FakeProducer()
    app = IntakeApp(
        _FakeConsumer(codec),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        JOBS_ACCEPTED,
        limits=Limits(),
        bounds=RequestBounds(),
    )
    bad = request(problem=_maxcut([{"u": 0, "v": 1, "weight": math.nan}]))
    with pytest.raises(InvalidProblemError) as info:
        app.handle(_record(bad))
    assert classify(info.value) is ErrorClass.INVALID_INPUT
    assert producer.sent == []
