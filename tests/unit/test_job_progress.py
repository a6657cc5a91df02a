"""Progress of long variational runs: reporter, tracker, record, sink mapping, GetJob and CLI."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qbridge.bus import Record
from qbridge.cli import app as cli_app
from qbridge.cli.app import main
from qbridge.contracts import AvroCodec, FileSchemaRegistry
from qbridge.contracts.gateway_messages import progress_pb, progress_text
from qbridge.contracts.records import JobProgress, ProgressPhase
from qbridge.contracts.registry import registry_file
from qbridge.errors import CodecError, ProducerQueueFullError
from qbridge.executor.app import PROGRESS_EVENTS, ProgressPublisher
from qbridge.executor.progress import ProgressSettings, ProgressTracker, RunProgress
from qbridge.executor.worker import execute
from qbridge.results.read import StoredJob
from qbridge.solvers.quantum import QaoaSettings
from qbridge.solvers.quantum.checkpoint import LoopCheckpoint, MemoryCheckpointStore
from qbridge.topics import JOB_OUTCOMES, JOB_PROGRESS, JOB_STATUS, RESULTS_SINK_GROUP
from quantum_executor.solvers import QuantumSolvers
from results_sink import mapping as m
from results_sink.app import ResultsSinkApp
from tests.unit.test_executor_quantum import work_item
from tests.unit.test_gateway import outcome, transition
from tests.unit.test_gateway_server import Gateway

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def checkpoint(iteration: int, best: float = -1.0, calls: int | None = None) -> LoopCheckpoint:
    return LoopCheckpoint(
        iteration=iteration,
        maxiter=40,
        angles=[0.1, 0.2],
        best_angles=[0.1, 0.2],
        best_value=best,
        calls=iteration + 1 if calls is None else calls,
        parameter_sets=iteration + 8,
        shots_used=0,
        exact_sets=iteration + 8,
        single_eval_s=0.01,
        energy_scale=2.0,
        energy_offset=-3.0,
    )


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reporter(
    events: list[JobProgress], interval_s: float = 1.0, clock: Clock | None = None
) -> RunProgress:
    return RunProgress(
        work_item(),
        events.append,
        ProgressSettings(interval_s=interval_s),
        clock=lambda: T0,
        monotonic=clock or Clock(),
    )


# --- the reporter ---------------------------------------------------------------------


def test_reporter_throttles_iterations_but_always_sends_first_and_last() -> None:
    events: list[JobProgress] = []
    clock = Clock()
    run = reporter(events, interval_s=1.0, clock=clock)
    for i in range(10):  # 0.25 s per iteration: one event per 4 iterations
        clock.now = i * 0.25
        run.iteration(checkpoint(i, best=-float(i)))
    run.finished()
    assert [e.iteration for e in events] == [0, 4, 8, 9]
    assert [e.phase for e in events] == [ProgressPhase.OPTIMIZING] * 3 + [ProgressPhase.FINISHED]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    last = events[-1]
    assert last.max_iterations == 40 and last.backend_calls == 10
    assert last.best_energy == pytest.approx(-9.0 * 2.0 - 3.0)  # scaled back, offset added
    assert last.job_id == "job-q" and last.work_id == "job-q:1:quantum" and last.attempt == 1
    assert last.tenant == "acme" and last.backend == "aer_statevector"
    assert last.resumed_from_iteration is None and last.run_started_at == T0


def test_interval_zero_reports_every_iteration() -> None:
    events: list[JobProgress] = []
    run = reporter(events, interval_s=0.0)
    for i in range(5):
        run.iteration(checkpoint(i))
    assert [e.iteration for e in events] == [0, 1, 2, 3, 4]


def test_a_resumed_run_says_where_it_resumed_from() -> None:
    events: list[JobProgress] = []
    run = reporter(events)
    run.resumed(checkpoint(6))
    run.iteration(checkpoint(7))
    run.finished()
    assert [(e.iteration, e.resumed_from_iteration) for e in events] == [(7, 6), (7, 6)]


def test_failed_run_reports_its_last_position_and_nothing_before_any_iteration() -> None:
    events: list[JobProgress] = []
    run = reporter(events)
    run.failed()
    run.finished()
    assert events == []
    run.iteration(checkpoint(3))
    run.failed()
    assert [(e.phase, e.iteration) for e in events] == [
        (ProgressPhase.OPTIMIZING, 3),
        (ProgressPhase.FAILED, 3),
    ]


def test_a_failing_sink_never_fails_the_run() -> None:
    def broken(event: JobProgress) -> None:
        raise RuntimeError("broker gone")

    run = RunProgress(work_item(), broken, ProgressSettings(interval_s=0.0))
    run.iteration(checkpoint(0))
    run.finished()
    assert run.sent == 0 and run.seq == 2


# --- the tracker ----------------------------------------------------------------------


def test_tracker_stores_first_then_reports_to_the_run_watching_the_key() -> None:
    inner = MemoryCheckpointStore()
    tracker = ProgressTracker(inner)
    seen: list[tuple[int, bool]] = []

    def sink(event: JobProgress) -> None:
        stored = inner.load("job-q:1")
        seen.append((event.iteration, stored is not None and stored.iteration == event.iteration))

    run = RunProgress(work_item(), sink, ProgressSettings(interval_s=0.0))
    tracker.save("other:1", checkpoint(0))  # nobody watches: stored, not reported
    with tracker.watch("job-q:1", run):
        tracker.save("job-q:1", checkpoint(0))
        tracker.save("job-q:1", checkpoint(1))
    tracker.save("job-q:1", checkpoint(2))  # after the run: not reported
    assert seen == [(0, True), (1, True)]
    assert inner.load("other:1") is not None and inner.saves == 4


def test_tracker_without_a_durable_store_reports_but_cannot_resume() -> None:
    tracker = ProgressTracker(None)
    events: list[JobProgress] = []
    run = RunProgress(work_item(), events.append, ProgressSettings(interval_s=0.0))
    with tracker.watch("k:1", run):
        tracker.save("k:1", checkpoint(0))
        assert tracker.load("k:1") is None
        tracker.delete("k:1")
    assert [e.phase for e in events] == [ProgressPhase.OPTIMIZING, ProgressPhase.FINISHED]


class CrashAt(MemoryCheckpointStore):
    """Simulates a crash right after iteration ``k`` was checkpointed."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def save(self, key: str, checkpoint: LoopCheckpoint) -> None:
        super().save(key, checkpoint)
        if checkpoint.iteration == self.k:
            self.k = -1
            raise KeyboardInterrupt  # not an Exception: nothing in the solver catches it


def test_real_qaoa_reports_progress_and_resume_through_the_executor_worker() -> None:
    events: list[JobProgress] = []
    store = CrashAt(3)
    solvers = QuantumSolvers(
        ["aer_statevector"],
        QaoaSettings(p=1, maxiter=8, initial_candidates=4, tol=1e-12),
        checkpoints=store,
        progress=events.append,
        progress_settings=ProgressSettings(interval_s=0.0),
    )
    item = work_item()
    with pytest.raises(KeyboardInterrupt):
        execute(item, solvers.for_item, datetime.now(UTC))
    # Iteration 3 was checkpointed durably, then the process "died" before reporting it.
    first_run = list(events)
    assert [e.iteration for e in first_run] == [0, 1, 2]
    assert all(e.resumed_from_iteration is None for e in first_run)
    energies = [e.best_energy for e in first_run if e.best_energy is not None]
    assert len(energies) == 3 and energies == sorted(energies, reverse=True)

    events.clear()
    records = execute(item, solvers.for_item, datetime.now(UTC))
    assert records[-1]["status"] == "ok"
    assert events[0].iteration == 4 and events[0].resumed_from_iteration == 3
    assert events[0].run_started_at >= first_run[0].run_started_at
    final = events[-1]
    assert final.phase is ProgressPhase.FINISHED and final.resumed_from_iteration == 3
    prov = records[-1]["provenance"]
    assert final.iteration == prov["optimizer_iterations"]
    assert final.best_energy is not None and final.best_energy <= energies[-1]
    assert store.load("job-q:1") is None  # finished: checkpoint deleted


def test_without_a_progress_sink_the_executor_checkpoints_as_before() -> None:
    store = MemoryCheckpointStore()
    solvers = QuantumSolvers(["aer_statevector"], QaoaSettings(p=1, maxiter=3), checkpoints=store)
    records = execute(work_item(), solvers.for_item, datetime.now(UTC))
    assert records[-1]["status"] == "ok" and store.saves >= 1


# --- the record and its publisher -----------------------------------------------------


def event(**overrides: Any) -> JobProgress:
    values: dict[str, Any] = {
        "job_id": "job-p",
        "work_id": "job-p:1:quantum",
        "attempt": 1,
        "tenant": "acme",
        "correlation_id": "corr",
        "backend": "aer_statevector",
        "phase": ProgressPhase.OPTIMIZING,
        "iteration": 7,
        "max_iterations": 40,
        "best_energy": -12.3,
        "resumed_from_iteration": 4,
        "backend_calls": 8,
        "shots_used": 0,
        "run_started_at": T0,
        "seq": 3,
        "emitted_at": T0 + timedelta(seconds=5),
    }
    values.update(overrides)
    return JobProgress(**values)


def test_record_round_trips_through_the_registered_schema() -> None:
    codec = AvroCodec(FileSchemaRegistry(registry_file()))
    original = event()
    decoded = codec.decode(codec.encode(JOB_PROGRESS.record, original.to_avro()))
    assert decoded.subject == JOB_PROGRESS.record
    assert JobProgress.from_avro(decoded.value) == original
    assert JOB_PROGRESS.name in RESULTS_SINK_GROUP.topics
    with pytest.raises(CodecError, match="phase"):
        JobProgress.from_avro({**original.to_avro(), "phase": "dreaming"})


class FakeProducer:
    def __init__(self, fail: Exception | None = None) -> None:
        self.codec = AvroCodec(FileSchemaRegistry(registry_file()))
        self.sent: list[tuple[str, bytes, Any, float]] = []
        self.fail = fail
        self.flushes = 0

    def send_raw(self, topic: str, value: bytes, key: Any = None, headers: Any = None,
                 deadline_s: float = 30.0, on_delivery: Any = None) -> None:  # fmt: skip
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic, value, key, deadline_s))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushes += 1


def _count(result: str) -> float:
    return PROGRESS_EVENTS.labels(result)._value.get()  # type: ignore[no-any-return]


def test_publisher_never_waits_and_drops_instead_of_raising() -> None:
    ok = FakeProducer()
    ProgressPublisher(ok)(event())  # type: ignore[arg-type]
    [(topic, value, key, deadline_s)] = ok.sent
    assert topic == JOB_PROGRESS.name and key == "job-p" and deadline_s == 0.0
    assert ok.codec.decode(value).value["iteration"] == 7

    dropped = _count("dropped")
    full = FakeProducer(ProducerQueueFullError("queue full"))
    ProgressPublisher(full)(event())  # type: ignore[arg-type]
    assert _count("dropped") == dropped + 1 and full.flushes == 0


# --- results sink ---------------------------------------------------------------------


class ProgressStore:
    def __init__(self) -> None:
        self.rows: list[m.ProgressRow] = []

    def record_progress(self, row: m.ProgressRow) -> str:
        self.rows.append(row)
        return "inserted"


def test_sink_maps_and_routes_progress_records() -> None:
    store = ProgressStore()
    app = ResultsSinkApp(store)  # type: ignore[arg-type]
    app.handle(Record("t", 0, 1, b"job-p", event().to_avro(), JOB_PROGRESS.record, {}, 0))
    [row] = store.rows
    assert (row.job_id, row.tenant, row.iteration, row.max_iterations) == ("job-p", "acme", 7, 40)
    assert row.resumed_from_iteration == 4 and row.best_energy == -12.3
    assert row.run_started_at == T0 and row.seq == 3
    nan = m.progress_row({**event().to_avro(), "best_energy": float("nan")})
    assert nan.best_energy is None
    with pytest.raises(m.InvalidRecordError, match="phase"):
        m.progress_row({**event().to_avro(), "phase": "dreaming"})


# --- GetJob and the CLI ---------------------------------------------------------------


def stored_row(**progress: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"tenant": "tenant-a", "status": "running", "status_seq": 3}
    row.update({f"p_{k}": v for k, v in progress.items()})
    return row


PROGRESS = {
    "phase": "optimizing",
    "attempt": 1,
    "backend": "aer_statevector",
    "iteration": 7,
    "max_iterations": 40,
    "best_energy": -12.3,
    "resumed_from_iteration": 4,
    "backend_calls": 8,
    "shots_used": 0,
    "run_started_at": T0,
    "emitted_at": T0 + timedelta(seconds=5),
}


def test_progress_message_and_text() -> None:
    msg = progress_pb(PROGRESS)
    assert (msg.iteration, msg.max_iterations, msg.best_energy) == (7, 40, -12.3)
    assert (
        msg.resumed_from_iteration == 4 and msg.updated_at.ToDatetime(UTC) == PROGRESS["emitted_at"]
    )
    fresh = progress_pb({**PROGRESS, "resumed_from_iteration": None, "best_energy": None})
    assert not fresh.HasField("resumed_from_iteration") and not fresh.HasField("best_energy")
    assert progress_text(phase="optimizing", iteration=7, max_iterations=40, best_energy=-12.3,
                         resumed_from_iteration=4, backend_calls=8) == (
        "iteration 7/40, best -12.3, resumed from 4, 8 backend calls"
    )  # fmt: skip
    assert progress_text(phase="finished", iteration=40, max_iterations=40).endswith("(finished)")


@pytest.fixture
def gw() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.stop()


def test_get_job_and_cli_show_the_progress(gw: Gateway) -> None:
    gw.reader.jobs["job-p"] = StoredJob(stored_row(**PROGRESS), None)
    gw.reader.jobs["job-plain"] = StoredJob(stored_row(phase=None), None)
    out, err = io.StringIO(), io.StringIO()
    target = ["--target", f"127.0.0.1:{gw.port}", "--api-key", "key-a"]
    assert main([*target, "get", "job-p"], out=out, err=err) == 0, err.getvalue()
    assert (
        "progress   iteration 7/40, best -12.3, resumed from 4, 8 backend calls "
        "[attempt 1 on aer_statevector]"
    ) in out.getvalue()

    out = io.StringIO()
    assert main([*target, "--json", "get", "job-p"], out=out, err=err) == 0
    assert '"resumed_from_iteration": 4' in out.getvalue()

    out = io.StringIO()
    assert main([*target, "get", "job-plain"], out=out, err=err) == 0
    assert "progress" not in out.getvalue()


def test_dashboard_shows_the_progress_of_recent_jobs() -> None:
    from qbridge.dashboard.page import render_page
    from tests.unit.test_deploy_ops import _summary

    recent = dict(_summary()["recent"][0])
    running = {**recent, "job_id": "job-running", "progress": "iteration 7/40, best -12.3"}
    html = render_page(_summary(recent=[running, recent]), window_min=60, refresh_s=0)
    assert '<td class="progress">iteration 7/40, best -12.3</td>' in html
    assert html.count('<td class="progress">') == 2  # the job without progress: a dash


def test_watch_reports_the_progress_between_transitions(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_app, "_PROGRESS_POLL_S", 0.05)
    job = "job-watch"
    gw.reader.jobs[job] = StoredJob(
        stored_row(**{**PROGRESS, "resumed_from_iteration": None}), None
    )
    gw.reader.trans[job] = [transition(job, 1, "accepted")]
    shown = threading.Event()
    out, err = io.StringIO(), io.StringIO()

    def printed(text: str) -> bool:  # the watcher printed it (polls, no fixed sleeps)
        end = time.monotonic() + 30
        while text not in err.getvalue() and time.monotonic() < end:
            time.sleep(0.02)
        return text in err.getvalue()

    def live() -> None:
        if printed("iteration 7/40"):
            gw.reader.jobs[job] = StoredJob(stored_row(**{**PROGRESS, "iteration": 9}), None)
        if printed("iteration 9/40"):
            shown.set()
        gw.hub.dispatch(JOB_STATUS.name, transition(job, 2, "succeeded", "accepted"), {})
        gw.hub.dispatch(JOB_OUTCOMES.name, outcome(job), {})

    threading.Thread(target=live).start()
    target = ["--target", f"127.0.0.1:{gw.port}", "--api-key", "key-a"]
    assert main([*target, "watch", job], out=out, err=err) == 0, err.getvalue()
    assert shown.is_set()
    lines = [li for li in err.getvalue().splitlines() if "progress" in li]
    assert "iteration 7/40" in lines[0] and "resumed" not in lines[0]
    assert "iteration 9/40" in lines[-1] and "resumed from 4" in lines[-1]
    assert len(lines) == 2, lines  # one line per change, not per poll
    assert "objective" in out.getvalue()
