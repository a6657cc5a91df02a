"""The cross-job lockstep never waits on one job at another's expense, and stops on demand.

Each failure mode of the lockstep that stalled a batched quantum executor: a lane that
never asks again, lanes raising at any point, a short-budget job grouped with long
ones, a slow backend call, and a shutdown in the middle of a group. A hang is a test
failure here: every wait is bounded (a thread join with a timeout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp

from qbridge.bus import Record
from qbridge.errors import BudgetExceededError, StoppingError
from qbridge.executor.app import ExecutorApp
from qbridge.executor.worker import batch_groups, execute_group
from qbridge.problems.maxcut import MaxCut
from qbridge.solvers.base import Budget, Outcome
from qbridge.solvers.quantum import QaoaSettings, QaoaSolver, TranspileCache
from qbridge.solvers.quantum.aer import AerStatevectorBackend
from qbridge.solvers.quantum.base import BitMatrix, FloatArray, PreparedCircuit, QuantumBackend
from qbridge.solvers.quantum.batching import (
    CallCosts,
    Lane,
    LaneDeadlineError,
    Lockstep,
    run_lockstep,
)
from qbridge.topics import SOLVER_OUTCOMES
from quantum_executor.solvers import QuantumSolvers
from tests.unit.test_quantum_batching import _Consumer, _item, _Producer

BOUND_S = 20.0
"""A generous bound on every wait: reaching it means the lockstep hung."""

SETTINGS = QaoaSettings(p=1, maxiter=6, initial_candidates=4)


class _FakeBackend:
    """Records each call's rows (by observable) and answers the row sums at once."""

    exact_expectation = True

    def __init__(self, on_call: Callable[[list[str]], None] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.on_call = on_call

    def estimate_rows(
        self,
        prepared: Any,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        labels = [o.paulis[0].to_label() for o in observables]
        self.calls.append(labels)
        if self.on_call is not None:
            self.on_call(labels)
        return np.asarray(values, dtype=np.float64).sum(axis=1)

    def sample(self, prepared: Any, values: FloatArray, *, shots: int, seed: int) -> BitMatrix:
        self.calls.append(["sample"] * values.shape[0])
        return np.zeros((values.shape[0], shots, 2), dtype=np.uint8)


def _lockstep(backend: _FakeBackend, size: int, **kwargs: Any) -> Lockstep:
    return Lockstep(cast(QuantumBackend, backend), size, **kwargs)


def _estimate(lane: Lane, label: str, rows: int = 2) -> FloatArray:
    """One evaluation of ``rows`` rows, tagged with an observable ``label`` (e.g. ``ZI``)."""
    values = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    return lane.estimate(cast(PreparedCircuit, None), SparsePauliOp(label), values, shots=0, seed=1)


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(target())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_lane_that_never_asks_again_is_not_waited_for_forever() -> None:
    backend = _FakeBackend()
    lockstep = _lockstep(backend, 2, patience_s=0.05)
    # Lane 1 neither asks nor leaves (stuck outside the lockstep, or a task that ended
    # without leave): lane 0's request must still be served.
    thread, box = _in_thread(lambda: _estimate(lockstep.lane(0), "ZI"))
    thread.join(BOUND_S)
    assert not thread.is_alive(), "the lockstep waited forever for a lane that never asked"
    np.testing.assert_allclose(box[0], [1.0, 5.0])
    assert lockstep.stats.stragglers == 1
    # The straggler is not waited for again, and joins the next call once it asks.
    thread, box = _in_thread(lambda: _estimate(lockstep.lane(0), "ZI"))
    thread.join(BOUND_S)
    assert not thread.is_alive()
    thread, box = _in_thread(lambda: _estimate(lockstep.lane(1), "IZ"))
    thread.join(BOUND_S)
    assert not thread.is_alive()
    np.testing.assert_allclose(box[0], [1.0, 5.0])


@pytest.mark.parametrize("when", ["before_asking", "after_one_call", "in_the_backend"])
def test_a_lane_raising_at_any_point_does_not_hold_the_others(when: str) -> None:
    def fail_in_backend(labels: list[str]) -> None:
        if "ZZ" in labels and len(backend.calls) > 1:  # the failing job's later calls
            raise RuntimeError("backend defect")

    backend = _FakeBackend(on_call=fail_in_backend if when == "in_the_backend" else None)

    def failing(lane: Lane) -> float:
        if when == "before_asking":
            raise ValueError("bad problem")
        _estimate(lane, "ZZ")
        if when == "after_one_call":
            raise ValueError("bad result")
        return float(_estimate(lane, "ZZ").sum())

    def healthy(lane: Lane) -> float:
        return float(sum(_estimate(lane, "ZI").sum() for _ in range(3)))

    tasks: list[Callable[[Lane], float]] = [healthy, failing, healthy]
    thread, box = _in_thread(lambda: run_lockstep(cast(QuantumBackend, backend), tasks))
    thread.join(BOUND_S)
    assert not thread.is_alive(), "a failing lane held the group"
    results, _ = box[0]
    assert results[0] == results[2] == 18.0
    assert isinstance(results[1], (ValueError, RuntimeError))


def test_leave_is_idempotent_and_a_left_lane_cannot_ask() -> None:
    lockstep = _lockstep(_FakeBackend(), 2)
    lane = lockstep.lane(1)
    lane.leave()
    lane.leave()
    with pytest.raises(RuntimeError, match="left"):
        _estimate(lane, "ZI")
    np.testing.assert_allclose(_estimate(lockstep.lane(0), "ZI"), [1.0, 5.0])


def test_calls_are_sized_to_the_most_urgent_deadline() -> None:
    backend = _FakeBackend()
    costs = CallCosts()
    costs.observe("estimate", 8, 0.8)  # learned earlier: 0.1 s a row
    lockstep = _lockstep(backend, 4, costs=costs)
    lanes = [lockstep.lane(i) for i in range(4)]
    lanes[2].deadline = time.perf_counter() + 1.2  # 8 rows (0.8 s) fit, 16 do not
    labels = ["ZIII", "IZII", "IIZI", "IIIZ"]
    threads = [_in_thread(lambda i=i: _estimate(lanes[i], labels[i], rows=8))[0] for i in range(4)]
    for t in threads:
        t.join(BOUND_S)
        assert not t.is_alive()
    # The urgent job went first, alone; the others (no deadline) shared the next call.
    assert backend.calls[0] == ["IIZI"] * 8
    assert sorted(set(label for call in backend.calls[1:] for label in call)) == [
        "IIIZ",
        "IZII",
        "ZIII",
    ]
    assert len(backend.calls) == 2


def test_an_evaluation_that_cannot_fit_its_budget_is_not_served() -> None:
    backend = _FakeBackend()
    costs = CallCosts()
    costs.observe("estimate", 2, 1.0)  # 0.5 s a row: 2 rows take 1 s
    lockstep = _lockstep(backend, 2, costs=costs)
    short, other = lockstep.lane(0), lockstep.lane(1)
    short.deadline = time.perf_counter() + 0.5
    t_short, short_box = _in_thread(lambda: _estimate(short, "ZI"))
    t_other, other_box = _in_thread(lambda: _estimate(other, "IZ"))
    for t in (t_short, t_other):
        t.join(BOUND_S)
        assert not t.is_alive()
    assert isinstance(short_box[0], LaneDeadlineError)
    assert isinstance(short_box[0], BudgetExceededError)  # over_budget, as alone
    np.testing.assert_allclose(other_box[0], [1.0, 5.0])
    assert all("ZI" not in call for call in backend.calls)
    assert lockstep.stats.dropped == 1


def test_a_request_waiting_past_its_deadline_leaves_the_wait() -> None:
    release = threading.Event()
    backend = _FakeBackend(on_call=lambda _: release.wait(BOUND_S))
    lockstep = _lockstep(backend, 2)
    slow, late = lockstep.lane(0), lockstep.lane(1)
    t_slow, _ = _in_thread(lambda: _estimate(slow, "ZI"))
    while not backend.calls:  # the first call (a probe of lane 0) is in the backend
        time.sleep(0.01)
    late.deadline = time.perf_counter() + 0.1
    t_late, late_box = _in_thread(lambda: _estimate(late, "IZ"))
    t_late.join(BOUND_S)
    release.set()
    t_slow.join(BOUND_S)
    assert not t_late.is_alive() and not t_slow.is_alive()
    assert isinstance(late_box[0], LaneDeadlineError)


def test_stop_interrupts_waiting_lanes_and_a_call_in_progress() -> None:
    stop = threading.Event()
    release = threading.Event()

    def block(_: list[str]) -> None:
        stop.set()  # SIGTERM arrives while the backend is busy with a long call
        release.wait(BOUND_S)

    backend = _FakeBackend(on_call=block)

    def task(lane: Lane) -> float:
        return float(sum(_estimate(lane, "ZI").sum() for _ in range(5)))

    tasks: list[Callable[[Lane], float]] = [task] * 3
    thread, box = _in_thread(
        lambda: run_lockstep(cast(QuantumBackend, backend), tasks, stopping=stop.is_set)
    )
    thread.join(BOUND_S)
    release.set()
    assert not thread.is_alive(), "stopping did not interrupt the group"
    results, _ = box[0]
    assert all(isinstance(r, StoppingError) for r in results)


# -- QAOA solves in lockstep ----------------------------------------------------------


class _SlowBackend(AerStatevectorBackend):
    """The exact simulator, slowed down per row (a large circuit, a loaded machine).

    With ``on_block``, its second estimate call (after the probe) calls it and then
    blocks until ``release`` is set (a long call in progress).
    """

    def __init__(
        self,
        per_row_s: float = 0.0,
        on_block: Callable[[], None] | None = None,
        release: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.per_row_s = per_row_s
        self.on_block, self.release = on_block, release
        self.rows_per_call: list[int] = []

    def _estimate_rows(
        self,
        prepared: PreparedCircuit,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        self.rows_per_call.append(values.shape[0])
        time.sleep(self.per_row_s * values.shape[0])
        if len(self.rows_per_call) == 2 and self.on_block is not None:
            assert self.release is not None
            self.on_block()
            self.release.wait(BOUND_S * 3)
        return super()._estimate_rows(prepared, observables, values, shots=shots, seed=seed)


def _ring(n: int, weights: Sequence[float]) -> MaxCut:
    return MaxCut(n, tuple((i, (i + 1) % n, w) for i, w in zip(range(n), weights, strict=False)))


def test_a_short_budget_job_in_a_group_of_long_ones_gets_its_answer_as_alone() -> None:
    # 4 starting points a job, 0.05 s a row: one job's first evaluation takes 0.2 s,
    # a call of all 8 jobs' first evaluations 1.6 s, far over the short job's 0.9 s.
    backend = _SlowBackend(per_row_s=0.05)
    solver = QaoaSolver(backend, SETTINGS, cache=TranspileCache())
    problems = [_ring(6, [1.0 + 0.1 * i] * 6) for i in range(8)]
    # Warm (as the executor's prewarm does): pass manager built, template transpiled.
    solver.solve_many(problems[:2], [Budget(time_limit_s=30.0, shots=16)] * 2)
    budgets = [Budget(time_limit_s=30.0, shots=128, seed=i) for i in range(8)]
    budgets[3] = Budget(time_limit_s=0.9, shots=128, seed=3)

    thread, box = _in_thread(lambda: solver.solve_many(problems, budgets))
    thread.join(BOUND_S * 3)
    assert not thread.is_alive()
    results = box[0]
    short = results[3]
    assert isinstance(short, Outcome), f"the short job failed in the group: {short!r}"
    assert short.provenance.settings["batch_size"] == 8
    assert short.provenance.settings["stop_reason"] in ("time_limit", "maxiter", "converged")
    for i in (0, 1, 2, 4, 5, 6, 7):
        outcome = results[i]
        assert isinstance(outcome, Outcome)
        assert outcome.provenance.optimizer_iterations == SETTINGS.maxiter  # not cut short
    # Calls were shared: far fewer than one per job and step.
    assert len(backend.rows_per_call) < sum(
        cast(Outcome, r).provenance.settings["backend_calls"] for r in results
    )


def test_learned_call_costs_are_kept_per_batch_key() -> None:
    solver = QaoaSolver(AerStatevectorBackend(), SETTINGS, cache=TranspileCache())
    problems = [_ring(5, [1.0 + 0.1 * i] * 5) for i in range(3)]
    budget = Budget(shots=64, seed=1)
    solver.solve_many(problems, [budget] * 3)
    key = solver.batch_key(problems[0], budget)
    costs = solver._call_costs[key]
    estimate = costs.estimate("estimate", 4)
    assert estimate is not None and estimate > 0
    assert costs.estimate("sample", 1) is not None


# -- the executor: groups by budget class, shutdown mid-group -------------------------


def test_items_are_grouped_only_with_similar_budgets() -> None:
    solvers = QuantumSolvers(["aer_statevector"], SETTINGS)
    # Budget classes (powers of two of seconds): 0.2-0.24 s, 1-1.5 s, 20 s.
    limits = [200, 220, 1000, 1500, 20_000, 240]
    items = [_item(i, time_limit_ms=ms) for i, ms in enumerate(limits)]
    groups = batch_groups(items, solvers.for_item, datetime.now(UTC))
    assert sorted(map(sorted, groups)) == [[0, 1, 5], [2, 3], [4]]


def test_sigterm_mid_group_hands_the_unfinished_items_back_promptly() -> None:
    consumer = _Consumer()
    release = threading.Event()

    def sigterm() -> None:
        consumer.stopping = True

    solvers = QuantumSolvers(
        ["aer_statevector"],
        SETTINGS,
        backend_factory=lambda name, **_: _SlowBackend(on_block=sigterm, release=release),
    )
    producer = _Producer()
    app = ExecutorApp(
        "quantum-executor",
        consumer,  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        solvers,
        concurrency=2,
        group_max=8,
    )
    records = [
        Record("work", 0, i, f"job-{i}".encode(), _item(i), "qbridge.WorkItem", {}, 0)
        for i in range(4)
    ]
    thread, box = _in_thread(lambda: app.handle_batch(records))
    thread.join(BOUND_S)
    release.set()
    assert not thread.is_alive(), "a running group ignored the shutdown"
    assert isinstance(box[0], StoppingError)  # the consumer hands the batch back
    finals = [r for r in producer.sent if r["status"] != "started"]
    # The probed job may have finished; the jobs caught in the blocked call did not
    # report anything final (they are redelivered).
    assert len(finals) <= 1
    assert all(r["status"] == "ok" for r in finals)


def test_execute_group_reports_nothing_final_for_items_a_stop_interrupted() -> None:
    solvers = QuantumSolvers(["aer_statevector"], SETTINGS)
    items = [_item(i) for i in range(3)]
    with pytest.raises(StoppingError):
        execute_group(items, solvers.for_item, datetime.now(UTC), stopping=lambda: True)


def test_cross_job_batching_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantum_executor.config import QuantumSettings

    monkeypatch.delenv("QBRIDGE_CROSS_JOB_BATCHING", raising=False)
    monkeypatch.delenv("QBRIDGE_CROSS_JOB_BATCH_MAX", raising=False)
    assert QuantumSettings().group_max() == 32
    monkeypatch.setenv("QBRIDGE_CROSS_JOB_BATCHING", "false")
    assert QuantumSettings().group_max() == 0


# -- predicted evaluation time (statevector backends) ---------------------------------


def _prepared(backend: AerStatevectorBackend, n: int) -> PreparedCircuit:
    from qbridge.solvers.quantum.ansatz import IsingModel, build_qaoa_circuit

    model = IsingModel.from_qubo(_ring(n, [1.0] * n).to_qubo().qubo)
    return backend.prepare(build_qaoa_circuit(n, model.linear_support, model.quadratic_support, 1))


def test_evaluation_cost_extrapolates_from_the_largest_circuits_timed() -> None:
    from qbridge.solvers.quantum.costs import EvaluationCost, circuit_work

    backend = AerStatevectorBackend()
    tiny, mid, large = (_prepared(backend, n) for n in (2, 10, 16))
    cost = EvaluationCost()
    assert cost.per_row(large) is None  # nothing timed: no prediction
    cost.observe(tiny, 1, 0.001)
    # Only overhead timed so far: no rate, the prediction lets a large job run.
    assert cost.per_row(large) == pytest.approx(0.001)
    cost.observe(mid, 4, 0.4)  # 0.1 s a row, 0.099 s of it work
    rate = 0.099 / circuit_work(mid)
    assert cost.per_row(large) == pytest.approx(0.001 + rate * circuit_work(large))
    assert cost.per_row(large) > 50 * cost.per_row(mid)  # type: ignore[operator]


def test_a_job_that_cannot_fit_one_evaluation_fails_at_once_and_tight_ones_get_fewer_starts() -> (
    None
):
    from qbridge.solvers.quantum.costs import circuit_work

    backend = AerStatevectorBackend()
    solver = QaoaSolver(backend, SETTINGS, cache=TranspileCache())
    problem = _ring(10, [1.0] * 10)
    prepared = _prepared(backend, 10)
    # As if 10-qubit rows took 0.5 s each (a slow machine, or a large circuit).
    solver._eval_cost.observe(_prepared(backend, 2), 1, 1e-4)
    solver._eval_cost.observe(prepared, 1, 0.5)
    assert solver._eval_cost.per_row(prepared) == pytest.approx(0.5)
    with pytest.raises(BudgetExceededError, match="predicted"):
        solver.solve(problem, Budget(time_limit_s=0.6, shots=64))
    # 1.2 s left: one starting point (at most half the time), not SETTINGS' four.
    outcome = solver.solve(problem, Budget(time_limit_s=1.2, shots=64))
    assert outcome.provenance.settings["initial_candidates_evaluated"] == 1
    # Plenty of time: every starting point.
    outcome = solver.solve(problem, Budget(time_limit_s=60.0, shots=64))
    assert outcome.provenance.settings["initial_candidates_evaluated"] == 4
    assert circuit_work(prepared) > 0
