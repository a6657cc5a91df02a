"""The gateway's own classical answer: the hedge that makes Solve's deadline unconditional.

The answers come from the classical portfolio (:mod:`qbridge.solvers.portfolio`, the
same module as the classical executor and the orchestrator's last resort):

* an *instant* answer computed on the calling thread in about a millisecond
  (:func:`~qbridge.solvers.portfolio.instant_outcome`): a feasible answer exists at once,
  whatever the load;
* then the anytime portfolio with the time left before the caller's deadline, in a
  small pool of worker *processes* (threads with ``mode="thread"``), so solver CPU never
  competes with the gRPC threads for the GIL. Each improvement is sent back as soon as
  it exists, so the caller holds the best answer so far whenever it must answer.

Workers run at a lower CPU priority (nice :data:`WORKER_NICE`), so the hedge never
slows the gateway or the pipeline it hedges. The pool is earliest-deadline-first and
bounded; work of callers who have gone, or whose deadline is too close to be useful, is
dropped before it starts, and a worker that overruns a deadline grossly is replaced.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal

from prometheus_client import Counter

from qbridge.problems.base import Problem
from qbridge.samples import sample_mix
from qbridge.solvers.base import Budget, Outcome
from qbridge.solvers.classical import CpSatSettings
from qbridge.solvers.portfolio import (
    ClassicalPortfolio,
    PortfolioSettings,
    better,
    instant_outcome,
)

logger = logging.getLogger(__name__)

__all__ = ["LocalSolverPool", "LocalTask", "better", "instant_outcome", "solve_locally"]

LOCAL_SOLVES = Counter(
    "qbridge_gateway_local_solves_total",
    "Gateway-local classical solves, by solver and result (ok, none, skipped, error, busy).",
    ["solver", "result"],
)

MIN_USEFUL_S = 0.01
"""A local run with less time than this left is not started."""
SEND_RESERVE_S = 0.005
"""The local run ends this long before the answer time (its last report travels back)."""
WORKER_NICE = 10
"""Worker processes run at a lower CPU priority than the gateway's gRPC threads."""
OVERRUN_GRACE_S = 3.0
"""A worker still busy this long after its task's deadline is replaced."""

Emit = Callable[[str, Any], None]


def solve_locally(
    solver: ClassicalPortfolio, problem: Problem, seed: int, budget_s: float, emit: Emit
) -> None:
    """The portfolio within ``budget_s``; every improvement is emitted as it happens.

    Emits ``("improved", Outcome)`` (one or more), or ``("error", message)``, then
    ``("done", None)``.
    """
    try:
        solver.run(
            problem,
            Budget(time_limit_s=budget_s, seed=seed),
            emit=lambda outcome: emit("improved", outcome),
        )
    except Exception as exc:
        emit("error", f"{type(exc).__name__}: {exc}")
    finally:
        emit("done", None)


def warm_up(solver: ClassicalPortfolio) -> float:
    """Run the portfolio once per problem type (first calls are slow); returns seconds."""
    started = time.perf_counter()
    for _label, problem, _over in sample_mix(seed=1):
        instant_outcome(problem, 1)
        solve_locally(solver, problem, 1, 0.05, lambda _k, _v: None)
    return time.perf_counter() - started


def _worker_main(conn: Connection, settings: PortfolioSettings) -> None:  # pragma: no cover
    """Body of a worker process: warm up, then serve tasks until told to stop."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    solver = ClassicalPortfolio(settings)
    warm_up(solver)
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        problem, seed, budget_s = msg
        solve_locally(solver, problem, seed, budget_s, lambda k, v: conn.send((k, v)))


@dataclass(order=True)
class LocalTask:
    """One local run for one Solve call (ordered by deadline in the pool)."""

    answer_at: float
    seq: int
    problem: Problem = field(compare=False)
    seed: int = field(compare=False)
    done: threading.Event = field(default_factory=threading.Event, compare=False)
    outcome: Outcome | None = field(default=None, compare=False)
    error: str | None = field(default=None, compare=False)
    cancelled: bool = field(default=False, compare=False)
    started: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        """The caller has its answer or has gone: do not start (results are ignored)."""
        self.cancelled = True

    def best(self) -> Outcome | None:
        """The best answer so far (None before the first report)."""
        return self.outcome

    def on(self, kind: str, value: Any) -> None:
        """Record one emitted result (a later report wins ties: it may carry a proof)."""
        if kind == "improved":
            self.outcome = better(self.problem, self.outcome, value)
        elif kind == "error":
            self.error = str(value)


class _Worker:
    """Runs tasks in this process (threads) or in a child process."""

    def __init__(self, mode: Literal["process", "thread"], settings: PortfolioSettings) -> None:
        self.mode = mode
        self.settings = settings
        self.solver = ClassicalPortfolio(settings) if mode == "thread" else None
        self.proc: Any = None
        self.conn: Connection | None = None

    def start(self) -> None:
        if self.mode == "thread":
            return
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main, args=(child, self.settings), name="gateway-local", daemon=True
        )
        self.proc.start()
        child.close()
        self.conn = parent

    def wait_ready(self, timeout: float) -> bool:
        if self.conn is None:
            return True
        try:
            if not self.conn.poll(timeout):
                return False
            kind, _ = self.conn.recv()
        except (EOFError, OSError):
            return False  # the worker died while starting (its stderr says why)
        return bool(kind == "ready")

    def stop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            self.proc.join(2)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(2)
            self.proc = None

    def run(self, task: LocalTask, budget_s: float) -> None:
        if self.mode == "thread":
            assert self.solver is not None
            solve_locally(self.solver, task.problem, task.seed, budget_s, task.on)
            return
        assert self.conn is not None
        self.conn.send((task.problem, task.seed, budget_s))
        give_up = task.answer_at + OVERRUN_GRACE_S
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                raise TimeoutError("local worker overran the deadline")
            if not self.conn.poll(min(left, 0.5)):
                continue
            kind, value = self.conn.recv()  # EOFError if the worker died
            if kind == "ready":
                continue
            if kind == "done":
                return
            task.on(kind, value)


class LocalSolverPool:
    """Earliest-deadline-first pool of local solver workers."""

    def __init__(
        self,
        workers: int = 2,
        queue_limit: int = 32,
        max_budget_s: float = 60.0,
        settings: PortfolioSettings | None = None,
        mode: Literal["process", "thread"] = "thread",
    ) -> None:
        """Start ``workers`` workers (processes start in the background; see :meth:`wait_ready`).

        Args:
            workers: Concurrent local runs.
            queue_limit: Pending runs at most (beyond, :meth:`submit` returns None).
            max_budget_s: Longest local run (the rest of a longer deadline is not used).
            settings: Portfolio settings (CP-SAT with a small reserve by default).
            mode: ``process`` (separate processes: no GIL contention) or ``thread``.
        """
        self.queue_limit = queue_limit
        self.max_budget_s = max_budget_s
        self.settings = settings or PortfolioSettings(cpsat=CpSatSettings(reserve_s=0.01))
        self.mode = mode
        self._heap: list[LocalTask] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._workers = [_Worker(mode, self.settings) for _ in range(workers)]
        for w in self._workers:
            w.start()
        self._threads = [
            threading.Thread(target=self._dispatch, args=(w,), name=f"local-{i}", daemon=True)
            for i, w in enumerate(self._workers)
        ]
        for t in self._threads:
            t.start()

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait until every worker has warmed up; returns seconds waited."""
        started = time.monotonic()
        if self.mode == "thread":
            assert self._workers[0].solver is not None
            warm_up(self._workers[0].solver)
        with self._cond:
            pending = [w for w in self._workers if w.conn is not None]
        for w in pending:
            if not w.wait_ready(max(0.1, timeout - (time.monotonic() - started))):
                raise TimeoutError("a local solver worker did not start in time")
        return time.monotonic() - started

    def submit(self, problem: Problem, seed: int, answer_at: float) -> LocalTask | None:
        """Queue a local run that must finish by ``answer_at`` (monotonic seconds).

        Returns:
            The task, or None when the queue is full or no useful time is left.
        """
        if answer_at - time.monotonic() < MIN_USEFUL_S:
            LOCAL_SOLVES.labels("portfolio", "skipped").inc()
            return None
        task = LocalTask(answer_at, next(self._seq), problem, seed)
        with self._cond:
            if self._closed or len(self._heap) >= self.queue_limit:
                LOCAL_SOLVES.labels("portfolio", "busy").inc()
                return None
            heapq.heappush(self._heap, task)
            self._cond.notify()
        return task

    @property
    def pending(self) -> int:
        """Queued runs."""
        with self._cond:
            return len(self._heap)

    def close(self) -> None:
        """Stop the workers; queued runs are dropped."""
        with self._cond:
            self._closed = True
            for task in self._heap:
                task.cancel()
                task.done.set()
            self._heap.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=2.0)
        for w in self._workers:
            w.stop()

    def _dispatch(self, worker: _Worker) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                task = heapq.heappop(self._heap)
            self._run(worker, task)

    def _run(self, worker: _Worker, task: LocalTask) -> None:
        try:
            left = task.answer_at - time.monotonic()
            if task.cancelled or left < MIN_USEFUL_S:
                LOCAL_SOLVES.labels("portfolio", "skipped").inc()
                return
            task.started = True
            worker.run(task, min(self.max_budget_s, left - SEND_RESERVE_S))
            LOCAL_SOLVES.labels("portfolio", "error" if task.error else "ok").inc()
            if task.error:
                logger.warning("local solve of a %s problem: %s", task.problem.kind, task.error)
        except (TimeoutError, EOFError, OSError) as exc:
            LOCAL_SOLVES.labels("portfolio", "error").inc()
            logger.error("local solver worker failed (%s): replacing it", exc)
            worker.stop()
            if not self._closed:
                worker.start()
                worker.wait_ready(120)
        except Exception:
            LOCAL_SOLVES.labels("portfolio", "error").inc()
            logger.exception("local solve of a %s problem failed", task.problem.kind)
        finally:
            task.done.set()
