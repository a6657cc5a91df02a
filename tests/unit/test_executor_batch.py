"""Executors: exact in-process answers for small problems, concurrent solves per batch."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from classical_fallback.solvers import ClassicalSolvers
from qbridge.bus import Record
from qbridge.errors import StoppingError
from qbridge.executor.app import ExecutorApp
from qbridge.executor.worker import WorkerSettings, execute
from qbridge.problems.base import Problem
from qbridge.solvers.base import Budget, Eligibility, Outcome, Route, Solver
from qbridge.topics import SOLVER_OUTCOMES
from tests.unit.test_executor_worker import NOW, work_item


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def send(self, topic: Any, value: Any, key: Any = None, headers: Any = None) -> None:
        with self.lock:
            self.sent.append(value)


class _Rendezvous(Solver):
    """Returns only once ``parties`` solves run at the same time (or fails after 10 s)."""

    name = "rendezvous"
    route = Route.CLASSICAL

    def __init__(self, parties: int, inner: Solver) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.inner = inner

    def eligibility(self, problem: Problem) -> Eligibility:
        return Eligibility(True)

    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        self.barrier.wait()  # BrokenBarrierError if the solves were not concurrent
        return self.inner.solve(problem, budget)


def _records(n: int) -> list[Record]:
    return [
        Record(
            "work",
            0,
            i,
            f"job-{i}".encode(),
            work_item(work_id=f"job-{i}:1:classical", job_id=f"job-{i}"),
            "qbridge.WorkItem",
            {},
            0,
        )
        for i in range(n)
    ]


def test_small_problems_are_solved_exactly_in_process() -> None:
    solvers = ClassicalSolvers(["ortools"])
    _, ok = execute(work_item(), solvers.for_item, NOW, settings=WorkerSettings())
    assert ok["provenance"]["solver"] == "cp-sat", "disabled by default (quantum executor)"
    _, exact = execute(
        work_item(), solvers.for_item, NOW, settings=WorkerSettings(exact_max_variables=20)
    )
    assert exact["status"] == "ok"
    assert exact["provenance"]["solver"] == "exact"
    assert exact["quality"]["proven_optimal"] is True
    assert exact["solution"]["objective"] == pytest.approx(ok["solution"]["objective"])
    # Above the limit, the configured solver answers.
    _, big = execute(
        work_item(), solvers.for_item, NOW, settings=WorkerSettings(exact_max_variables=3)
    )
    assert big["provenance"]["solver"] == "cp-sat"


def test_an_unserved_backend_is_still_refused_before_the_exact_path() -> None:
    solvers = ClassicalSolvers(["ortools"])
    [_, err] = execute(
        work_item(backend="gurobi"),
        solvers.for_item,
        NOW,
        settings=WorkerSettings(exact_max_variables=20),
    )
    assert err["status"] == "error"
    assert err["error"]["error_class"] == "backend_unavailable"


def test_a_batch_is_solved_concurrently_and_every_item_answered() -> None:
    class Solvers:
        def __init__(self) -> None:
            self.solver = _Rendezvous(3, ClassicalSolvers(["ortools"]).solver)

        def for_item(self, item: Any) -> Solver:
            return self.solver

        def prewarm(self, backends: Any) -> None:
            pass

    producer = _Producer()
    app = ExecutorApp(
        "classical-fallback",
        SimpleNamespace(stopping=False),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        Solvers(),
        clock=lambda: NOW,
        concurrency=3,
    )
    app.handle_batch(_records(6))  # two rounds of three concurrent solves
    finals = [v for v in producer.sent if v["status"] != "started"]
    assert sorted(v["job_id"] for v in finals) == [f"job-{i}" for i in range(6)]
    assert all(v["status"] == "ok" for v in finals), [v["error"] for v in finals]
    assert app.handled == 6


def test_a_failing_item_fails_the_batch_for_the_consumer_to_retry_item_by_item() -> None:
    class Broken(_Producer):
        def send(self, topic: Any, value: Any, key: Any = None, headers: Any = None) -> None:
            if value["job_id"] == "job-1":
                raise RuntimeError("broker client broken")
            super().send(topic, value, key, headers)

    producer = Broken()
    app = ExecutorApp(
        "classical-fallback",
        SimpleNamespace(stopping=False),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        ClassicalSolvers(["ortools"]),
        clock=lambda: NOW,
        concurrency=2,
    )
    with pytest.raises(RuntimeError, match="broken"):
        app.handle_batch(_records(3))
    assert {v["job_id"] for v in producer.sent if v["status"] == "ok"} == {"job-0", "job-2"}


def test_on_shutdown_a_batch_finishes_running_solves_and_hands_back_the_rest() -> None:
    consumer = SimpleNamespace(stopping=False)
    inner = ClassicalSolvers(["ortools"]).solver

    class StopsOnFirstSolve:
        def for_item(self, item: Any) -> Solver:
            consumer.stopping = True  # SIGTERM arrives while the first item runs
            return inner

        def prewarm(self, backends: Any) -> None:
            pass

    producer = _Producer()
    app = ExecutorApp(
        "classical-fallback",
        consumer,  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        StopsOnFirstSolve(),
        clock=lambda: NOW,
        concurrency=2,
    )
    with pytest.raises(StoppingError):
        app.handle_batch(_records(6))
    # only what had started (at most one per worker) ran; the consumer redelivers the batch
    finals = {v["job_id"] for v in producer.sent if v["status"] != "started"}
    assert 1 <= len(finals) <= 2 and app.handled == len(finals)
