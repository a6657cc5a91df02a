"""results-sink without a broker or database: mapping, routing, error classes, replay logic."""

from __future__ import annotations

import argparse
import io
import json
import math
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from qbridge.bus import Record
from qbridge.contracts import AvroCodec
from qbridge.contracts.convert import problem_to_avro
from qbridge.errors import ErrorClass, StoreUnavailableError, classify
from qbridge.problems.registry import problem_from_dict
from qbridge.solvers.base import (
    Budget,
    Candidate,
    Eligibility,
    Outcome,
    Provenance,
    Quality,
    Route,
    Solver,
)
from results_sink import cli, mapping
from results_sink.app import ResultsSinkApp, UnroutableRecordError
from results_sink.mapping import InvalidRecordError
from results_sink.migrate import load_migrations
from results_sink.replay import ReplayError, ReplaySpec, classical_solver, load_spec, replay
from results_sink.store import translate

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
MAXCUT = problem_from_dict("maxcut", {"num_nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 2.0]]})


def envelope(job_id: str = "job-1", **over: Any) -> dict[str, Any]:
    _, problem = problem_to_avro(MAXCUT)
    rec = {
        "job_id": job_id,
        "idempotency_key": "key-1",
        "request_id": "req-1",
        "tenant": "acme",
        "problem_type": "maxcut",
        "schema_version": 2,
        "problem": problem,
        "input_fingerprint": MAXCUT.fingerprint(),
        "output_shape": {"kind": "binary", "length": 3},
        "num_variables": 3,
        "num_qubits": 3,
        "timeout_ms": 30_000,
        "deadline_at": T0,
        "fallback_policy": "auto",
        "priority": 5,
        "shot_budget": None,
        "seed": 42,
        "correlation_id": "corr-1",
        "tags": {"team": "ops"},
        "created_at": T0,
        "accepted_at": T0,
    }
    rec.update(over)
    return rec


def provenance(**over: Any) -> dict[str, Any]:
    rec = {
        "route": "classical",
        "solver": "cp-sat",
        "backend": "ortools",
        "backend_version": "9.15",
        "sdk_versions": {"ortools": "9.15"},
        "settings_json": '{"num_workers": 1, "stopped_by": "proof"}',
        "circuit_depth": None,
        "circuit_width": None,
        "shots": None,
        "seed": 42,
        "optimizer_iterations": 10,
        "timings": {"queue_ms": 1.0, "transpile_ms": 0.0, "execute_ms": 5.5, "postprocess_ms": 0.5},
        "cache_hit": None,
        "cost_units": 0.25,
    }
    rec.update(over)
    return rec


def solution(assignment: list[int], objective: float, **over: Any) -> dict[str, Any]:
    return {"assignment": assignment, "objective": objective, "feasible": True, **over}


def solver_outcome(status: str = "ok", **over: Any) -> dict[str, Any]:
    ok = status == "ok"
    rec = {
        "work_id": "job-1:1:classical",
        "job_id": "job-1",
        "attempt": 1,
        "route": "classical",
        "tenant": "acme",
        "status": status,
        "error": (
            {"error_class": "transient", "error_type": "TimeoutError", "message": "slow"}
            if status == "error"
            else None
        ),
        "solution": solution([0, 1, 0], 3.0, frequency=None) if ok else None,
        "candidates": [solution([0, 1, 0], 3.0, frequency=None)] if ok else [],
        "quality": {"proven_optimal": True, "bound": 3.0, "gap": 0.0} if ok else None,
        "provenance": provenance() if ok else None,
        "correlation_id": "corr-1",
        "produced_at": T0,
    }
    rec.update(over)
    return rec


def job_outcome(**over: Any) -> dict[str, Any]:
    rec = {
        "job_id": "job-1",
        "tenant": "acme",
        "status": "succeeded",
        "reason": "",
        "problem_type": "maxcut",
        "input_fingerprint": MAXCUT.fingerprint(),
        "route": "classical",
        "solution": solution([0, 1, 0], 3.0, frequency=None),
        "candidates": [
            solution([0, 1, 0], 3.0, frequency=None),
            solution([0, 1, 1], 1.0, frequency=None),
            solution([0, 1, 0], 3.0, frequency=None),  # repeated: dropped
        ],
        "quality": {
            "proven_optimal": True,
            "bound": 3.0,
            "gap": 0.0,
            "expected_objective": None,
            "confidence": 1.0,
        },
        "provenance": provenance(),
        "attempts": 1,
        "quantum_classical_gap": None,
        "correlation_id": "corr-1",
        "completed_at": T0,
    }
    rec.update(over)
    return rec


def transition(seq: int = 1, to: str = "accepted", **over: Any) -> dict[str, Any]:
    rec = {
        "job_id": "job-1",
        "tenant": "acme",
        "seq": seq,
        "from_status": None,
        "to_status": to,
        "reason": "",
        "attempt": None,
        "route": None,
        "backend": None,
        "correlation_id": "corr-1",
        "at": T0,
    }
    rec.update(over)
    return rec


# --- mapping --------------------------------------------------------------------------


def test_job_row_keeps_problem_and_identity() -> None:
    row = mapping.job_row(envelope())
    assert row.job_id == "job-1"
    assert row.problem_kind == "maxcut"
    assert row.problem == {
        "num_nodes": 3,
        "edges": [{"u": 0, "v": 1, "weight": 1.0}, {"u": 1, "v": 2, "weight": 2.0}],
    }
    assert row.seed == 42
    assert row.tags == {"team": "ops"}
    assert row.created_at == T0 and row.deadline_at.tzinfo is not None


def test_mapping_accepts_what_the_codec_decodes(codec: AvroCodec) -> None:
    """Round trip through the real Avro codec: union branches and timestamps as decoded."""
    cases = [
        ("qbridge.JobEnvelope", envelope(), mapping.job_row),
        ("qbridge.JobStatusTransition", transition(), mapping.transition_row),
        ("qbridge.SolverOutcome", solver_outcome(), mapping.attempt_row),
        ("qbridge.JobOutcome", job_outcome(), mapping.outcome_rows),
    ]
    for subject, record, fn in cases:
        decoded = codec.decode(codec.encode(subject, record), expected_subject=subject).value
        fn(decoded)
    env = codec.decode(codec.encode("qbridge.JobEnvelope", envelope())).value
    assert mapping.job_row(env) == mapping.job_row(envelope())


def test_epoch_millis_timestamps_are_accepted() -> None:
    ms = int(T0.timestamp() * 1000)
    assert mapping.transition_row(transition(at=ms)).at == T0
    with pytest.raises(InvalidRecordError):
        mapping.to_datetime("yesterday")  # type: ignore[arg-type]


def test_transition_row_and_finality() -> None:
    row = mapping.transition_row(transition(3, "succeeded", route="classical", attempt=1))
    assert (row.seq, row.to_status, row.route, row.attempt) == (3, "succeeded", "classical", 1)
    assert row.is_final
    assert not mapping.transition_row(transition(2, "running")).is_final


def test_attempt_row_ok_carries_full_provenance_and_cost() -> None:
    row = mapping.attempt_row(solver_outcome())
    assert row.is_terminal and row.status == "ok"
    assert (row.backend, row.solver) == ("ortools", "cp-sat")
    assert row.assignment == [0, 1, 0] and row.objective == 3.0 and row.feasible
    assert row.cost_units == 0.25
    assert row.duration_ms == pytest.approx(7.0)
    assert row.provenance is not None
    assert row.provenance["settings"] == {"num_workers": 1, "stopped_by": "proof"}
    assert "settings_json" not in row.provenance
    assert row.provenance["sdk_versions"] == {"ortools": "9.15"}
    assert row.provenance["timings"]["execute_ms"] == 5.5
    assert row.candidates == [
        {"assignment": [0, 1, 0], "objective": 3.0, "feasible": True, "frequency": None}
    ]


def test_attempt_row_started_and_error() -> None:
    started = mapping.attempt_row(solver_outcome("started"))
    assert not started.is_terminal
    assert started.provenance is None and started.cost_units == 0.0
    err = mapping.attempt_row(solver_outcome("error"))
    assert (err.error_class, err.error_type, err.error_message) == (
        "transient",
        "TimeoutError",
        "slow",
    )
    assert err.assignment is None and err.objective is None


def test_unknown_attempt_status_is_invalid_input() -> None:
    with pytest.raises(InvalidRecordError) as info:
        mapping.attempt_row(solver_outcome("done"))
    assert classify(info.value) is ErrorClass.INVALID_INPUT


def test_bad_settings_json_is_kept_raw() -> None:
    doc = mapping.provenance_json(provenance(settings_json="{not json"))
    assert doc is not None
    assert doc["settings"] == {} and doc["settings_json"] == "{not json"


def test_non_finite_numbers_become_null() -> None:
    rows = mapping.outcome_rows(
        job_outcome(
            quantum_classical_gap=math.inf,
            quality={
                "proven_optimal": False,
                "bound": math.nan,
                "gap": None,
                "expected_objective": None,
                "confidence": None,
            },
        )
    )
    assert rows.solution.quantum_classical_gap is None
    assert rows.solution.bound is None


def test_outcome_rows_rank_distinct_candidates() -> None:
    rows = mapping.outcome_rows(job_outcome())
    sol = rows.solution
    assert (sol.status, sol.route, sol.backend, sol.solver) == (
        "succeeded",
        "classical",
        "ortools",
        "cp-sat",
    )
    assert sol.assignment == [0, 1, 0] and sol.objective == 3.0 and sol.proven_optimal
    assert [(c.rank, c.assignment) for c in rows.candidates] == [(1, [0, 1, 0]), (2, [0, 1, 1])]


def test_failed_outcome_without_solution() -> None:
    rows = mapping.outcome_rows(
        job_outcome(
            status="failed",
            reason="no backend",
            route=None,
            solution=None,
            candidates=[],
            quality=None,
            provenance=None,
        )
    )
    assert rows.solution.assignment is None and rows.solution.objective is None
    assert rows.solution.provenance is None and rows.candidates == []


# --- routing and error classes --------------------------------------------------------


class FakeStore:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail

    def _call(self, name: str, row: Any) -> str:
        if self.fail is not None:
            raise self.fail
        self.calls.append((name, row))
        return "inserted"

    def ping(self, timeout_s: float = 2.0) -> None:
        if self.fail is not None:
            raise StoreUnavailableError("down")

    def record_job(self, row: Any) -> Any:
        return self._call("job", row)

    def record_transition(self, row: Any) -> Any:
        return self._call("transition", row)

    def record_attempt(self, row: Any) -> Any:
        return self._call("attempt", row)

    def record_outcome(self, rows: Any) -> Any:
        return self._call("outcome", rows)


def _record(subject: str, value: dict[str, Any]) -> Record:
    return Record("t", 0, 7, b"job-1", value, subject, {}, 0)


def test_records_are_routed_by_subject() -> None:
    store = FakeStore()
    app = ResultsSinkApp(store)
    app.handle(_record("qbridge.JobEnvelope", envelope()))
    app.handle(_record("qbridge.JobStatusTransition", transition()))
    app.handle(_record("qbridge.SolverOutcome", solver_outcome()))
    app.handle(_record("qbridge.JobOutcome", job_outcome()))
    assert [c[0] for c in store.calls] == ["job", "transition", "attempt", "outcome"]


def test_unknown_subject_is_invalid_input() -> None:
    app = ResultsSinkApp(FakeStore())
    with pytest.raises(UnroutableRecordError) as info:
        app.handle(_record("qbridge.WorkItem", {"job_id": "x"}))
    assert classify(info.value) is ErrorClass.INVALID_INPUT


def test_database_outage_is_transient_never_dead_lettered() -> None:
    app = ResultsSinkApp(FakeStore(fail=psycopg.OperationalError("connection refused")))
    with pytest.raises(StoreUnavailableError) as info:
        app.handle(_record("qbridge.JobStatusTransition", transition()))
    assert classify(info.value) is ErrorClass.TRANSIENT


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (psycopg.OperationalError("server closed the connection"), ErrorClass.TRANSIENT),
        (pg_errors.DeadlockDetected("deadlock"), ErrorClass.TRANSIENT),
        (pg_errors.SerializationFailure("retry"), ErrorClass.TRANSIENT),
        (pg_errors.AdminShutdown("terminating"), ErrorClass.TRANSIENT),
        (pg_errors.UndefinedTable("no jobs table"), ErrorClass.TRANSIENT),
        (psycopg.InterfaceError("connection is closed"), ErrorClass.TRANSIENT),
        (pg_errors.NumericValueOutOfRange("too big"), ErrorClass.INVALID_INPUT),
        (pg_errors.UniqueViolation("dup"), ErrorClass.DEFECT),
    ],
)
def test_driver_errors_are_classified(exc: BaseException, expected: ErrorClass) -> None:
    assert classify(translate(exc)) is expected


def test_readiness_follows_the_database() -> None:
    app = ResultsSinkApp(FakeStore())
    assert app.ready()[0] is False  # not started yet
    assert app.start()
    assert app.ready() == (True, "ready")
    down = ResultsSinkApp(FakeStore(fail=psycopg.OperationalError("down")))
    down._started.set()
    ok, detail = down.ready()
    assert not ok and "down" in detail


def test_start_retries_until_the_database_answers() -> None:
    attempts: list[int] = []

    def flaky_migrate() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise psycopg.OperationalError("connection refused")

    app = ResultsSinkApp(FakeStore(), migrate=flaky_migrate, startup_backoff_s=0.01)
    assert app.start()
    assert len(attempts) == 3


# --- migrations -----------------------------------------------------------------------


def test_migrations_are_numbered_in_order() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].version == 1 and migrations[0].name == "init"
    assert all(len(m.checksum) == 64 for m in migrations)


# --- replay ---------------------------------------------------------------------------


class FakeSource:
    def __init__(self, job: dict[str, Any] | None) -> None:
        self.job = job

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self.job


def stored_job(**over: Any) -> dict[str, Any]:
    env = envelope()
    prov = mapping.provenance_json(provenance())
    job = {
        "job_id": "job-1",
        "problem_type": "maxcut",
        "problem": mapping.job_row(env).problem,
        "seed": 42,
        "timeout_ms": 30_000,
        "envelope_received": True,
        "status": "succeeded",
        "solution_status": "succeeded",
        "solution_route": "classical",
        "solution_assignment": [0, 1, 0],
        "solution_objective": 3.0,
        "solution_feasible": True,
        "solution_provenance": prov,
    }
    job.update(over)
    return job


class FixedSolver(Solver):
    name = "fixed"
    route = Route.CLASSICAL

    def __init__(self, assignment: tuple[int, ...]) -> None:
        self.assignment = assignment
        self.budgets: list[Budget] = []

    def eligibility(self, problem: Any) -> Eligibility:
        return Eligibility(True)

    def solve(self, problem: Any, budget: Budget) -> Outcome:
        self.budgets.append(budget)
        ev = problem.evaluate(self.assignment)
        best = Candidate(self.assignment, ev.objective, ev.feasible)
        return Outcome(best, (best,), Quality(), Provenance(Route.CLASSICAL, "fixed", "none"))


def test_replay_matches_and_uses_the_stored_seed() -> None:
    solver = FixedSolver((0, 1, 0))
    result = replay(FakeSource(stored_job()), "job-1", lambda spec: solver)
    assert result.matches
    assert solver.budgets[0].seed == 42
    assert result.stored_objective_recomputed == 3.0
    assert result.to_dict()["matches"] is True


def test_replay_reports_a_different_answer() -> None:
    result = replay(FakeSource(stored_job()), "job-1", lambda spec: FixedSolver((0, 1, 1)))
    assert not result.matches
    assert not result.objective_matches and not result.assignment_matches


@pytest.mark.parametrize(
    "job",
    [
        None,
        stored_job(envelope_received=False, problem=None),
        stored_job(solution_status=None),
        stored_job(solution_status="failed", solution_assignment=None, solution_objective=None),
        stored_job(solution_provenance=None),
    ],
)
def test_unreplayable_jobs_are_reported(job: dict[str, Any] | None) -> None:
    with pytest.raises(ReplayError):
        load_spec(FakeSource(job), "job-1")


def test_classical_replay_rebuilds_cp_sat_with_stored_settings() -> None:
    spec: ReplaySpec = load_spec(FakeSource(stored_job()), "job-1")
    solver = classical_solver(spec)
    assert solver.name == "cp-sat"
    assert solver.settings.num_workers == 1  # type: ignore[attr-defined]


# --- CLI formatting -------------------------------------------------------------------


def test_results_table_format() -> None:
    rows: list[dict[str, Any]] = [
        {"job_id": "j1", "tenant": "acme", "objective": 3.0, "feasible": True, "attempts": 1},
        {"job_id": "job-22", "tenant": "b", "objective": None, "feasible": None},
    ]
    text = cli.format_table(rows, cli.RESULT_COLUMNS)
    lines = text.splitlines()
    assert lines[0].split() == [
        "job",
        "tenant",
        "type",
        "status",
        "route",
        "objective",
        "feasible",
        "attempts",
        "latency_ms",
    ]
    assert "yes" in lines[2] and lines[3].startswith("job-22")


def test_replay_cli_exit_code_when_not_replayable(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    @contextlib.contextmanager
    def fake_store(url: str) -> Any:
        yield FakeSource(None)

    monkeypatch.setattr(cli, "open_store", fake_store)
    out = io.StringIO()
    args = argparse.Namespace(job_id="nope", database_url="x", json=True)
    assert cli.cmd_replay(args, out) == cli.EXIT_ERROR
    assert "not in the results store" in out.getvalue()


def _quantum_spec(backend: str, **settings: Any) -> ReplaySpec:
    prov = mapping.provenance_json(
        provenance(
            route="quantum",
            solver="qaoa",
            backend=backend,
            shots=1024,
            settings_json=json.dumps(settings),
        )
    )
    return load_spec(FakeSource(stored_job(solution_provenance=prov)), "job-1")


def test_quantum_replay_rebuilds_qaoa_from_provenance() -> None:
    from results_sink.replay import quantum_solver

    spec = _quantum_spec(
        "aer_statevector",
        p=3,
        maxiter=7,
        final_shots=1024,
        optimization_level=2,
        seed_transpiler=11,
        backend_options={"method": "statevector"},
        stop_reason="maxiter",
    )
    assert spec.budget.shots == 1024 and spec.budget.seed == 42
    solver = quantum_solver(spec)
    assert solver.name == "qaoa"
    assert (solver.settings.p, solver.settings.maxiter) == (3, 7)  # type: ignore[attr-defined]
    transpile = solver.backend.transpile_settings  # type: ignore[attr-defined]
    assert (transpile.optimization_level, transpile.seed_transpiler) == (2, 11)


def test_quantum_replay_refuses_real_devices() -> None:
    from results_sink.replay import quantum_solver

    with pytest.raises(ReplayError, match="not replayable"):
        quantum_solver(_quantum_spec("ibm_runtime"))
