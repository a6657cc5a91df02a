"""The gateway's own classical answer: the hedge that makes Solve's deadline unconditional.

Three layers, cheapest first:

* an *instant* answer computed on the calling thread in about a millisecond: greedy for
  constrained types, one sequential greedy pass over the QUBO for the others. A feasible
  answer exists at once, whatever the load;
* the heuristics of :func:`qbridge.solvers.fallback.last_resort` (restarts and tabu
  search for a few tens of ms), then
* CP-SAT (:class:`~qbridge.solvers.classical.CpSatSolver`) with the time left before the
  caller's deadline.

The last two run in a small pool of worker *processes* (threads with
``mode="thread"``), so solver CPU never competes with the gRPC threads for the GIL:
the gateway stays punctual under load; they also run at a lower CPU priority (nice
:data:`WORKER_NICE`), so the hedge never slows the gateway or the pipeline it hedges.
The pool is earliest-deadline-first and bounded; work of callers who have gone, or
whose deadline is too close to be useful, is dropped before it starts, and a worker
that overruns a deadline grossly is replaced.
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
from qbridge.problems.knapsack import Knapsack
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.qubo import Qubo
from qbridge.problems.scheduling import JobShop
from qbridge.samples import sample_mix
from qbridge.solvers import heuristics
from qbridge.solvers.base import (
    Budget,
    Candidate,
    Outcome,
    Provenance,
    Quality,
    Route,
    Timings,
)
from qbridge.solvers.classical import CpSatSettings, CpSatSolver
from qbridge.solvers.fallback import last_resort

logger = logging.getLogger(__name__)

LOCAL_SOLVES = Counter(
    "qbridge_gateway_local_solves_total",
    "Gateway-local classical solves, by solver and result (ok, none, skipped, error, busy).",
    ["solver", "result"],
)

LOCAL_BACKEND = "gateway-local"
MIN_USEFUL_S = 0.01
"""A local run with less time than this left is not started."""
INSTANT_GREEDY_MAX_TERMS = 50_000
"""Above this many quadratic terms the instant answer is all zeros (no greedy pass)."""
INSTANT_SMALL = 200
"""Up to this many variables the library's (super-linear) greedy heuristics are instant."""
WORKER_NICE = 10
"""Worker processes run at a lower CPU priority than the gateway's gRPC threads."""
OVERRUN_GRACE_S = 3.0
"""A worker still busy this long after its task's deadline is replaced."""


def _outcome(problem: Problem, best: Candidate, solver: str, seed: int, started: float) -> Outcome:
    return Outcome(
        best=best,
        candidates=(best,),
        quality=Quality(),
        provenance=Provenance(
            route=Route.CLASSICAL,
            solver=solver,
            backend=LOCAL_BACKEND,
            seed=seed,
            timings=Timings(execute_s=time.perf_counter() - started),
        ),
    )


def greedy_qubo(qubo: Qubo) -> tuple[int, ...]:
    """One sequential greedy pass over the bits, O(n + terms) in pure Python.

    Each bit takes the value that lowers the energy given the bits already set (for
    MaxCut this is the classic greedy cut).
    """
    n = qubo.num_variables
    field_ = list(qubo.linear)
    neighbours: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (i, j), q in qubo.quadratic.items():
        neighbours[i].append((j, q))
        neighbours[j].append((i, q))
    x = [0] * n
    for i in range(n):
        if field_[i] < 0:
            x[i] = 1
            for j, q in neighbours[i]:
                field_[j] += q
    return tuple(x)


def _knapsack_density(problem: Knapsack) -> tuple[int, ...]:
    order = sorted(
        range(problem.num_variables), key=lambda i: -problem.values[i] / problem.weights[i]
    )
    x = [0] * problem.num_variables
    load = 0
    for i in order:
        if load + problem.weights[i] <= problem.capacity:
            x[i] = 1
            load += problem.weights[i]
    return tuple(x)


def _portfolio_top(problem: Portfolio) -> tuple[int, ...]:
    mu = problem.expected_returns
    score = [mu[i] - problem.risk_aversion * problem.covariance[i][i] for i in range(len(mu))]
    chosen = set(sorted(range(len(mu)), key=lambda i: -score[i])[: problem.budget])
    return tuple(int(i in chosen) for i in range(len(mu)))


def _jobshop_serial(problem: JobShop) -> tuple[int, ...]:
    starts, t = [], 0
    for job in problem.jobs:
        for op in job:
            starts.append(t)
            t += op.duration
    return tuple(starts)


def instant_assignments(problem: Problem, seed: int) -> list[tuple[int, ...]]:
    """Candidate assignments computed in about a millisecond, whatever the problem size.

    The library's greedy heuristics are used while they are cheap; beyond the size
    thresholds an O(n log n) construction takes over (density greedy, top-k assets, a
    serial schedule, a greedy pass or all zeros for QUBOs).
    """
    del seed  # deterministic constructions
    if isinstance(problem, Knapsack):
        if problem.num_variables <= INSTANT_SMALL:
            return [a for a, _ in heuristics.knapsack_greedy(problem).solutions]
        return [_knapsack_density(problem)]
    if isinstance(problem, Portfolio):
        if problem.num_variables <= INSTANT_SMALL:
            return [a for a, _ in heuristics.portfolio_greedy(problem).solutions]
        return [_portfolio_top(problem)]
    if isinstance(problem, JobShop):
        if problem.num_variables <= INSTANT_SMALL:
            return [a for a, _ in heuristics.jobshop_dispatch(problem).solutions]
        return [_jobshop_serial(problem)]
    enc = problem.to_qubo()
    zeros = (0,) * enc.qubo.num_variables
    if len(enc.qubo.quadratic) > INSTANT_GREEDY_MAX_TERMS:
        return [enc.decode(zeros)]
    greedy = enc.decode(greedy_qubo(enc.qubo))
    if problem.kind in ("maxcut", "qubo", "ising"):
        return [greedy]  # unconstrained, and the pass never raises the energy of all zeros
    return [greedy, enc.decode(zeros)]


def instant_outcome(problem: Problem, seed: int) -> Outcome | None:
    """A feasible answer in about a millisecond (None only if none was found)."""
    started = time.perf_counter()
    try:
        best: Candidate | None = None
        for a in instant_assignments(problem, seed):
            ev = problem.evaluate(a)
            if ev.feasible and (best is None or problem.is_better(ev.objective, best.objective)):
                best = Candidate(tuple(a), ev.objective, True)
    except Exception:
        logger.exception("instant answer failed on a %s problem", problem.kind)
        LOCAL_SOLVES.labels("greedy", "error").inc()
        return None
    if best is None:
        LOCAL_SOLVES.labels("greedy", "none").inc()
        return None
    LOCAL_SOLVES.labels("greedy", "ok").inc()
    return _outcome(problem, best, "greedy", seed, started)


def heuristic_outcome(problem: Problem, seed: int, time_limit_s: float) -> Outcome | None:
    """The heuristics of ``last_resort`` as an :class:`Outcome` (None if nothing feasible)."""
    started = time.perf_counter()
    best = last_resort(problem, seed, time_limit_s=max(0.001, time_limit_s))
    return None if best is None else _outcome(problem, best, "heuristic", seed, started)


def better(problem: Problem, a: Outcome | None, b: Outcome | None) -> Outcome | None:
    """The better of two outcomes: feasible first, then by objective.

    Ties go to ``b`` (pass the richer answer second: CP-SAT reports bounds and proofs).
    """
    if a is None:
        return b
    if b is None:
        return a
    if a.best.feasible != b.best.feasible:
        return a if a.best.feasible else b
    return a if problem.is_better(a.best.objective, b.best.objective) else b


Emit = Callable[[str, Any], None]


def solve_locally(
    solver: CpSatSolver,
    problem: Problem,
    seed: int,
    heuristic_s: float,
    cpsat_s: float,
    emit: Emit,
) -> None:
    """Heuristics, then CP-SAT; each result is emitted as soon as it exists.

    Emits ``("heuristic", Outcome | None)``, then ``("cp-sat", Outcome)`` or
    ``("error", message)``, then ``("done", None)``.
    """
    try:
        emit("heuristic", heuristic_outcome(problem, seed, heuristic_s))
        if cpsat_s >= MIN_USEFUL_S:
            emit("cp-sat", solver.solve(problem, Budget(time_limit_s=cpsat_s, seed=seed)))
    except Exception as exc:
        emit("error", f"{type(exc).__name__}: {exc}")
    finally:
        emit("done", None)


def warm_up(solver: CpSatSolver) -> float:
    """Run every solver once per problem type (first calls are slow); returns seconds."""
    started = time.perf_counter()
    for _label, problem, _over in sample_mix(seed=1):
        instant_outcome(problem, 1)
        solve_locally(solver, problem, 1, 0.005, 0.05, lambda _k, _v: None)
    return time.perf_counter() - started


def _worker_main(conn: Connection, settings: CpSatSettings) -> None:  # pragma: no cover
    """Body of a worker process: warm up, then serve tasks until told to stop."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    solver = CpSatSolver(settings)
    warm_up(solver)
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        problem, seed, heuristic_s, cpsat_s = msg
        solve_locally(solver, problem, seed, heuristic_s, cpsat_s, lambda k, v: conn.send((k, v)))


@dataclass(order=True)
class LocalTask:
    """One local run for one Solve call (ordered by deadline in the pool)."""

    answer_at: float
    seq: int
    problem: Problem = field(compare=False)
    seed: int = field(compare=False)
    done: threading.Event = field(default_factory=threading.Event, compare=False)
    heuristic: Outcome | None = field(default=None, compare=False)
    outcome: Outcome | None = field(default=None, compare=False)
    error: str | None = field(default=None, compare=False)
    cancelled: bool = field(default=False, compare=False)
    started: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        """The caller has its answer or has gone: do not start (results are ignored)."""
        self.cancelled = True

    def best(self) -> Outcome | None:
        """The best result so far (CP-SAT preferred on ties)."""
        return better(self.problem, self.heuristic, self.outcome)

    def on(self, kind: str, value: Any) -> None:
        """Record one emitted result."""
        if kind == "heuristic":
            self.heuristic = value
        elif kind == "cp-sat":
            self.outcome = value
        elif kind == "error":
            self.error = str(value)


class _Worker:
    """Runs tasks in this process (threads) or in a child process."""

    def __init__(self, mode: Literal["process", "thread"], settings: CpSatSettings) -> None:
        self.mode = mode
        self.settings = settings
        self.solver = CpSatSolver(settings) if mode == "thread" else None
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

    def run(self, task: LocalTask, heuristic_s: float, cpsat_s: float) -> None:
        if self.mode == "thread":
            assert self.solver is not None
            solve_locally(self.solver, task.problem, task.seed, heuristic_s, cpsat_s, task.on)
            return
        assert self.conn is not None
        self.conn.send((task.problem, task.seed, heuristic_s, cpsat_s))
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
            if kind == "cp-sat":
                task.done.set()  # the caller may answer now; "done" follows at once


class LocalSolverPool:
    """Earliest-deadline-first pool of local solver workers."""

    def __init__(
        self,
        workers: int = 2,
        queue_limit: int = 32,
        max_budget_s: float = 5.0,
        settings: CpSatSettings | None = None,
        mode: Literal["process", "thread"] = "thread",
        heuristic_share: float = 0.2,
        heuristic_max_s: float = 0.05,
    ) -> None:
        """Start ``workers`` workers (processes start in the background; see :meth:`wait_ready`).

        Args:
            workers: Concurrent local runs.
            queue_limit: Pending runs at most (beyond, :meth:`submit` returns None).
            max_budget_s: Longest CP-SAT run.
            settings: CP-SAT settings (single worker, small reserve by default).
            mode: ``process`` (separate processes: no GIL contention) or ``thread``.
            heuristic_share: Share of the time left given to the heuristics.
            heuristic_max_s: Cap of the heuristics' time.
        """
        self.queue_limit = queue_limit
        self.max_budget_s = max_budget_s
        self.heuristic_share = heuristic_share
        self.heuristic_max_s = heuristic_max_s
        self.settings = settings or CpSatSettings(reserve_s=0.01)
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
            LOCAL_SOLVES.labels("cp-sat", "skipped").inc()
            return None
        task = LocalTask(answer_at, next(self._seq), problem, seed)
        with self._cond:
            if self._closed or len(self._heap) >= self.queue_limit:
                LOCAL_SOLVES.labels("cp-sat", "busy").inc()
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
                LOCAL_SOLVES.labels("cp-sat", "skipped").inc()
                return
            task.started = True
            heuristic_s = min(self.heuristic_max_s, self.heuristic_share * left)
            cpsat_s = min(self.max_budget_s, left - heuristic_s - 0.005)
            worker.run(task, heuristic_s, cpsat_s)
            LOCAL_SOLVES.labels("cp-sat", "error" if task.error else "ok").inc()
            if task.error:
                logger.warning("local solve of a %s problem: %s", task.problem.kind, task.error)
        except (TimeoutError, EOFError, OSError) as exc:
            LOCAL_SOLVES.labels("cp-sat", "error").inc()
            logger.error("local solver worker failed (%s): replacing it", exc)
            worker.stop()
            if not self._closed:
                worker.start()
                worker.wait_ready(120)
        except Exception:
            LOCAL_SOLVES.labels("cp-sat", "error").inc()
            logger.exception("local solve of a %s problem failed", task.problem.kind)
        finally:
            task.done.set()
