"""The executors' shared execute(): outcomes for ok, every error class, deadlines."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from classical_fallback.solvers import ClassicalSolvers
from qbridge.bus import Record
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec, FileSchemaRegistry
from qbridge.contracts.convert import problem_from_avro
from qbridge.contracts.registry import registry_file
from qbridge.errors import (
    BackendUnavailableError,
    BudgetExceededError,
    InvalidProblemError,
    NotEligibleError,
    TransientSolverError,
)
from qbridge.executor.app import ExecutorApp
from qbridge.executor.worker import WorkerSettings, execute, observe
from qbridge.problems.base import Problem
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
)
from qbridge.topics import SOLVER_OUTCOMES

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MAXCUT = {
    "num_nodes": 4,
    "edges": [
        {"u": 0, "v": 1, "weight": 1.0},
        {"u": 1, "v": 2, "weight": 2.0},
        {"u": 2, "v": 3, "weight": 1.0},
        {"u": 0, "v": 3, "weight": 3.0},
        {"u": 0, "v": 2, "weight": 0.5},
    ],
}


def work_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "work_id": "job-1:2:classical",
        "job_id": "job-1",
        "attempt": 2,
        "route": "classical",
        "backend": "ortools",
        "tenant": "acme",
        "problem_type": "maxcut",
        "problem": MAXCUT,
        "time_limit_ms": 5_000,
        "shots": 0,
        "seed": 42,
        "top_n": 3,
        "priority": 5,
        "deadline_at": NOW + timedelta(seconds=20),
        "correlation_id": "corr-1",
        "enqueued_at": NOW - timedelta(milliseconds=250),
    }
    item.update(overrides)
    return item


class FakeSolver(Solver):
    name = "fake"
    route = Route.CLASSICAL

    def __init__(
        self,
        result: Any = None,
        *,
        assignment: tuple[int, ...] = (0, 1, 0, 1),
        claimed: float | None = None,
    ) -> None:
        self.result = result
        self.assignment = assignment
        self.claimed = claimed
        self.budgets: list[Budget] = []
        self.emitted_before_solve: list[dict[str, Any]] | None = None

    def eligibility(self, problem: Problem) -> Eligibility:
        return Eligibility(True)

    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        self.budgets.append(budget)
        if isinstance(self.result, BaseException):
            raise self.result
        ev = problem.evaluate(self.assignment) if len(self.assignment) == 4 else None
        objective = self.claimed if self.claimed is not None else (ev.objective if ev else 0.0)
        best = Candidate(self.assignment, objective, True, 0.5)
        prov = Provenance(
            route=Route.CLASSICAL,
            solver="fake",
            backend="fake",
            seed=budget.seed,
            shots=budget.shots,
            timings=Timings(execute_s=0.2, postprocess_s=0.01),
            cost_units=1.5,
            cache_hit=True,
        )
        return Outcome(best, (best,), Quality(proven_optimal=True, confidence=1.0), prov)


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(FileSchemaRegistry(registry_file()))


def _encodes(codec: AvroCodec, records: list[dict[str, Any]]) -> None:
    for r in records:
        decoded = codec.decode(codec.encode(SOLVER_OUTCOMES.record, r)).value
        assert decoded["status"] == r["status"]


def test_ok_emits_started_then_ok_with_provenance(codec: AvroCodec) -> None:
    solver = FakeSolver()
    started, ok = execute(work_item(), solver, NOW, clock=lambda: NOW + timedelta(seconds=1))
    for r in (started, ok):
        assert r["work_id"] == "job-1:2:classical"
        assert r["job_id"] == "job-1"
        assert r["attempt"] == 2
        assert r["route"] == "classical"
        assert r["tenant"] == "acme"
        assert r["correlation_id"] == "corr-1"
    assert started["status"] == "started"
    assert started["produced_at"] == NOW
    assert started["solution"] is None and started["error"] is None
    assert ok["status"] == "ok"
    assert ok["error"] is None
    assert ok["produced_at"] == NOW + timedelta(seconds=1)
    assert ok["solution"] == {
        "assignment": [0, 1, 0, 1],
        "objective": 7.0,  # every edge but 0-2 is cut
        "feasible": True,
        "frequency": 0.5,
    }
    assert ok["quality"]["proven_optimal"] is True
    prov = ok["provenance"]
    assert prov["timings"]["queue_ms"] == pytest.approx(250.0)
    assert prov["timings"]["execute_ms"] == pytest.approx(200.0)
    assert prov["seed"] == 42
    assert prov["cost_units"] == 1.5
    _encodes(codec, [started, ok])


def test_budget_honours_limit_deadline_shots_and_seed() -> None:
    solver = FakeSolver()
    execute(work_item(time_limit_ms=3_000, shots=1024, seed=7, top_n=4), solver, NOW)
    assert solver.budgets[-1] == Budget(time_limit_s=3.0, shots=1024, seed=7, top_n=4)
    # The deadline caps the limit: 1.5 s left although 3 s were granted.
    execute(work_item(time_limit_ms=3_000, deadline_at=NOW + timedelta(seconds=1.5)), solver, NOW)
    assert solver.budgets[-1].time_limit_s == pytest.approx(1.5)
    # shots == 0 means "not specified": the executor's default applies.
    execute(work_item(shots=0), solver, NOW, settings=WorkerSettings(default_shots=2048))
    assert solver.budgets[-1].shots == 2048


def test_deadline_already_passed_is_over_budget_without_solving(codec: AvroCodec) -> None:
    solver = FakeSolver()
    records = execute(work_item(deadline_at=NOW - timedelta(seconds=2)), solver, NOW)
    assert solver.budgets == []
    [error] = records
    assert error["status"] == "error"
    assert error["error"]["error_class"] == "over_budget"
    assert error["error"]["error_type"] == "BudgetExceededError"
    assert "deadline passed" in error["error"]["message"]
    _encodes(codec, records)


def test_too_little_time_left_is_over_budget() -> None:
    [error] = execute(work_item(deadline_at=NOW + timedelta(milliseconds=10)), FakeSolver(), NOW)
    assert error["error"]["error_class"] == "over_budget"
    [error] = execute(work_item(time_limit_ms=1), FakeSolver(), NOW)
    assert error["error"]["error_class"] == "over_budget"
    assert "time limit" in error["error"]["message"]


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (TransientSolverError("connection reset"), "transient"),
        (TimeoutError("socket timeout"), "transient"),
        (BackendUnavailableError("device offline"), "backend_unavailable"),
        (NotEligibleError("too many qubits"), "backend_unavailable"),
        (BudgetExceededError("first evaluation took too long"), "over_budget"),
        (InvalidProblemError("bad", field="edges"), "invalid_input"),
        (RuntimeError("boom"), "defect"),
        (ZeroDivisionError(), "defect"),
    ],
)
def test_solver_errors_become_classified_error_outcomes(
    codec: AvroCodec, exc: BaseException, error_class: str
) -> None:
    started, error = execute(work_item(), FakeSolver(exc), NOW)  # never raises
    assert started["status"] == "started"
    assert error["status"] == "error"
    assert error["error"]["error_class"] == error_class
    assert error["error"]["error_type"] == type(exc).__name__
    assert error["error"]["message"] == (str(exc) or type(exc).__name__)
    assert error["solution"] is None
    _encodes(codec, [started, error])


def test_invalid_problem_in_the_work_item_is_an_error_outcome() -> None:
    bad = {"num_nodes": 2, "edges": [{"u": 0, "v": 1, "weight": math.nan}]}
    _, error = execute(work_item(problem=bad), FakeSolver(), NOW)
    assert error["error"]["error_class"] == "invalid_input"
    assert "edges[0][2]" in error["error"]["message"]


def test_solver_factory_failure_is_an_error_outcome() -> None:
    def choose(item: Any) -> Solver:
        raise BackendUnavailableError(f"no backend {item['backend']}")

    _, error = execute(work_item(backend="nope"), choose, NOW)
    assert error["error"] == {
        "error_class": "backend_unavailable",
        "error_type": "BackendUnavailableError",
        "message": "no backend nope",
    }


def test_reported_objective_is_recomputed_classically() -> None:
    _, ok = execute(work_item(), FakeSolver(claimed=1000.0), NOW)
    assert ok["solution"]["objective"] == 7.0
    assert ok["candidates"][0]["objective"] == 7.0


def test_malformed_solver_answer_is_a_defect() -> None:
    _, error = execute(work_item(), FakeSolver(assignment=(0, 1)), NOW)
    assert error["error"]["error_class"] == "defect"
    assert "invalid assignment" in error["error"]["message"]


def test_started_is_emitted_before_the_solve() -> None:
    emitted: list[dict[str, Any]] = []

    class Peeking(FakeSolver):
        def solve(self, problem: Problem, budget: Budget) -> Outcome:
            self.emitted_before_solve = list(emitted)
            return super().solve(problem, budget)

    solver = Peeking()
    returned = execute(work_item(), solver, NOW, emit=emitted.append)
    assert [r["status"] for r in solver.emitted_before_solve or []] == ["started"]
    assert emitted == returned


def test_naive_timestamps_are_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    item = work_item(deadline_at=naive + timedelta(seconds=5), enqueued_at=naive)
    _, ok = execute(item, FakeSolver(), naive)
    assert ok["status"] == "ok"


def test_observe_exports_solver_metrics() -> None:
    from prometheus_client import REGISTRY

    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok_labels = {"route": "classical", "backend": "unit-be", "status": "ok"}
    err_labels = {"route": "classical", "backend": "unit-be", "status": "transient"}
    before = value("qbridge_solver_solves_total", ok_labels)
    for r in execute(work_item(), FakeSolver(), NOW):
        observe(r, "unit", "unit-be")
    for r in execute(work_item(), FakeSolver(TransientSolverError("x")), NOW):
        observe(r, "unit", "unit-be")
    assert value("qbridge_solver_solves_total", ok_labels) == before + 1
    assert value("qbridge_solver_solves_total", err_labels) >= 1
    assert value("qbridge_transpile_cache_requests_total", {"result": "hit"}) >= 1


# --- the classical executor's pieces -------------------------------------------------------


def _brute_force_maxcut(problem: Problem) -> float:
    return max(
        problem.evaluate(bits).objective
        for bits in itertools.product((0, 1), repeat=problem.num_variables)
    )


def test_cp_sat_through_execute_matches_brute_force() -> None:
    solvers = ClassicalSolvers(["ortools"])
    _, ok = execute(work_item(time_limit_ms=10_000), solvers.for_item, NOW)
    problem = problem_from_avro("maxcut", MAXCUT)
    assert ok["status"] == "ok", ok["error"]
    assert ok["solution"]["objective"] == pytest.approx(_brute_force_maxcut(problem))
    assert ok["quality"]["proven_optimal"] is True
    assert ok["provenance"]["solver"] == "cp-sat"
    assert ok["provenance"]["seed"] == 42
    assert len(ok["candidates"]) <= 3


def test_jobshop_through_execute() -> None:
    jobs = {
        "jobs": [
            [{"machine": 0, "duration": 3}, {"machine": 1, "duration": 2}],
            [{"machine": 1, "duration": 2}, {"machine": 0, "duration": 1}],
        ]
    }
    _, ok = execute(
        work_item(problem_type="jobshop", problem=jobs), ClassicalSolvers(["ortools"]).for_item, NOW
    )
    assert ok["status"] == "ok", ok["error"]
    assert ok["solution"]["objective"] == 5.0  # optimal makespan
    assert ok["solution"]["feasible"] is True


def test_classical_backend_must_be_served() -> None:
    solvers = ClassicalSolvers(["ortools"])
    assert solvers.for_item(work_item()) is solvers.solver
    with pytest.raises(BackendUnavailableError):
        solvers.for_item(work_item(backend="gurobi"))


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], Any, dict[str, bytes]]] = []

    def send(self, topic: Any, value: Any, key: Any = None, headers: Any = None) -> None:
        self.sent.append((topic.name, value, key, dict(headers or [])))


def _classical_app(producer: _FakeProducer, worker: WorkerSettings | None = None) -> ExecutorApp:
    return ExecutorApp(
        "classical-fallback",
        None,  # type: ignore[arg-type]  # the consumer is not used by handle()
        producer,  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        ClassicalSolvers(["ortools"]),
        worker=worker,
        clock=lambda: NOW,
    )


def test_classical_app_emits_outcomes_keyed_by_job_id(codec: AvroCodec) -> None:
    producer = _FakeProducer()
    app = ExecutorApp(
        "classical-fallback",
        None,  # type: ignore[arg-type]  # the consumer is not used by handle()
        producer,  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        ClassicalSolvers(["ortools"]),
        clock=lambda: NOW,
    )
    record = Record(
        "work", 0, 0, b"job-1", work_item(), "qbridge.WorkItem", {h.CORRELATION_ID: b"x"}, 0
    )
    app.handle(record)
    assert [(t, v["status"], k) for t, v, k, _ in producer.sent] == [
        (SOLVER_OUTCOMES.name, "started", "job-1"),
        (SOLVER_OUTCOMES.name, "ok", "job-1"),
    ]
    headers = producer.sent[1][3]
    assert headers[h.CORRELATION_ID] == b"corr-1"
    assert headers[h.JOB_ID] == b"job-1"
    assert h.TRACEPARENT in headers
    _encodes(codec, [v for _, v, _, _ in producer.sent])


def test_unencodable_result_is_reported_as_a_defect() -> None:
    from qbridge.errors import CodecError

    class Picky(_FakeProducer):
        def send(self, topic: Any, value: Any, key: Any = None, headers: Any = None) -> None:
            if value["status"] == "ok":
                raise CodecError("SolverOutcome record does not match its schema")
            super().send(topic, value, key, headers)

    producer = Picky()
    app = _classical_app(producer)
    app.handle(Record("work", 0, 0, b"job-1", work_item(), "qbridge.WorkItem", {}, 0))
    statuses = [
        (v["status"], (v["error"] or {}).get("error_class")) for _, v, _, _ in producer.sent
    ]
    assert statuses == [("started", None), ("error", "defect")]


def test_a_quick_solve_goes_without_its_started_record() -> None:
    producer = _FakeProducer()
    app = _classical_app(producer, WorkerSettings(exact_max_variables=20, started_delay_s=5.0))
    app.handle(Record("work", 0, 0, b"job-1", work_item(), "qbridge.WorkItem", {}, 0))
    app.announcer.close()  # a dropped start stays dropped at shutdown
    assert [v["status"] for _, v, _, _ in producer.sent] == ["ok"]
