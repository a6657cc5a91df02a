"""Cross-job batching: QAOA loops of compatible jobs share each backend call.

Several QAOA solves run in lockstep, one thread each (the same
:meth:`~qbridge.solvers.quantum.qaoa.QaoaSolver.solve` code as alone, so each job
keeps its own optimizer path, budgets, checkpoints and progress). Their backend
requests meet at a :class:`Lockstep`: once every job still running has asked for
its next evaluation, the requests go to the backend as ONE call (all parameter
rows with their own cost observables in one PUB, see
:meth:`~qbridge.solvers.quantum.base.QuantumBackend.estimate_rows`) and each job
gets its own rows back. Final samplings meet the same way (one sampler call).

Compatible (the batch key of :meth:`QaoaSolver.batch_key`): the same solver (so
the same backend, transpile and QAOA settings), the same number of qubits and
shot budget, no zero-noise extrapolation, and one shared circuit: on exact
simulators up to ``template_max_qubits`` qubits every job binds the *dense
template* (a field on every qubit, every pair coupled; absent terms bind to
angle 0), elsewhere only jobs with the same sparsity pattern (the same
transpiled circuit) are compatible.

Every job keeps its own budget. A lockstep never waits for one job at the
expense of another:

* Calls are sized to the most urgent deadline. :class:`CallCosts` learns how long
  a call of ``k`` rows takes on this circuit; the pending requests are served in
  deadline order and a call takes only as many as fit before the earliest of
  their deadlines (the rest go in the next call, at once). Until a first call has
  been timed, a call serves one job (a probe), never all of them blind.
* A job whose evaluation cannot be served before its deadline leaves the wait with
  :class:`LaneDeadlineError` (an ``over_budget`` error): in the optimizer loop that
  ends the loop with the best angles so far (as the loop's own time check does
  alone); before the first evaluation, the job fails ``over_budget``, as alone.
  Final samplings are never dropped.
* A job that does not ask within ``patience_s`` of the others (busy elsewhere, or
  never coming back), or by the time the most urgent waiting request must be
  served, is not waited for: the others' call goes without it, and it joins the
  next call once it asks.
* A job is done with the lockstep after its final sampling (its classical
  post-processing does not hold the others) or when its thread ends, whatever way.
* ``stopping`` (the consumer shutting down) interrupts the group: waiting jobs raise
  :class:`~qbridge.errors.StoppingError` at once, a backend call in progress is
  abandoned (its thread finishes in the background, its result unused).

Failure isolation: a job that fails leaves the lockstep and the others go on. A
batched call that raises is retried request by request (with each job's own
seed), so a failure reaches only the jobs whose own call fails.

Shot noise: a batched call has one simulator seed (derived from the jobs'
seeds), so shot-based estimates and the final samples differ from the same
job's unbatched run by shot noise only; they are deterministic for a given
batch. Exact estimates are the same values as unbatched.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from qiskit.quantum_info import SparsePauliOp

from qbridge.errors import BudgetExceededError, StoppingError
from qbridge.solvers.quantum.base import BitMatrix, FloatArray, PreparedCircuit, QuantumBackend

logger = logging.getLogger(__name__)

T = TypeVar("T")

_POLL_S = 0.05
"""Longest a waiting job sleeps before it looks at its deadline and at ``stopping`` again."""


class LaneDeadlineError(BudgetExceededError):
    """A job's evaluation could not be served in a batched call before its deadline."""


@dataclass
class _Request:
    lane: int
    kind: str  # "estimate" or "sample"
    prepared: PreparedCircuit
    values: FloatArray
    shots: int
    seed: int
    observable: SparsePauliOp | None = None
    deadline: float = math.inf
    """``time.perf_counter()`` by which this job's budget is spent."""
    since: float = 0.0
    """When the request was made (``time.perf_counter()``)."""
    result: npt.NDArray[Any] | None = None
    error: BaseException | None = None
    taken: bool = False
    done: bool = False

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])


class CallCosts:
    """How long a backend call of ``k`` rows takes, learned from the calls made.

    A line ``seconds = overhead + per_row * k`` fitted to the last ``window``
    timed calls of each kind (``estimate``, ``sample``); a sampling call is
    estimated from the estimates until one has been timed. Thread-safe: one
    instance is shared by the lockstep groups of one circuit structure.

    Args:
        window: Calls remembered per kind.
    """

    def __init__(self, window: int = 8) -> None:
        self._calls: dict[str, deque[tuple[int, float]]] = {}
        self._window = window
        self._lock = threading.Lock()

    def observe(self, kind: str, rows: int, seconds: float) -> None:
        """Record a call of ``rows`` rows that took ``seconds``."""
        with self._lock:
            self._calls.setdefault(kind, deque(maxlen=self._window)).append((rows, seconds))

    def estimate(self, kind: str, rows: int) -> float | None:
        """Expected seconds of a call of ``rows`` rows, or None before any call was timed."""
        with self._lock:
            calls = list(self._calls.get(kind) or self._calls.get("estimate") or ())
        if not calls:
            return None
        ks = np.array([k for k, _ in calls], dtype=np.float64)
        ts = np.array([t for _, t in calls], dtype=np.float64)
        per_row = float(np.median(ts / ks))
        overhead = 0.0
        if np.unique(ks).size >= 2:
            slope, intercept = np.polyfit(ks, ts, 1)
            if slope > 0 and intercept >= 0:
                per_row, overhead = float(slope), float(intercept)
        return overhead + per_row * rows


@dataclass
class LockstepStats:
    """Counters of one lockstep group (for provenance, tests and benchmarks).

    Attributes:
        backend_calls: Batched calls made (fallback calls included).
        requests: Evaluation and sampling requests served.
        fallbacks: Batched calls that failed and were retried request by request.
        dropped: Evaluations not served before their job's deadline.
        stragglers: Calls that went without a job that had not asked within the patience.
    """

    backend_calls: int = 0
    requests: int = 0
    fallbacks: int = 0
    dropped: int = 0
    stragglers: int = 0


@dataclass
class Lockstep:
    """The meeting point of ``size`` lanes on one backend (see the module docstring).

    Args:
        backend: The real backend.
        size: Lanes taking part; each ends with :meth:`leave` (idempotent).
        costs: Call durations learned so far (shared by groups of one circuit).
        patience_s: How long the requests made wait for a lane that has not asked
            yet before their call goes without it.
        stopping: Polled while waiting; once true, the group is interrupted.
    """

    backend: QuantumBackend
    size: int
    costs: CallCosts = field(default_factory=CallCosts)
    patience_s: float = 0.25
    stopping: Callable[[], bool] | None = None
    stats: LockstepStats = field(default_factory=LockstepStats)

    def __post_init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = set(range(self.size))
        self._late: set[int] = set()
        self._pending: dict[int, _Request] = {}
        self._in_flight = False
        self._go_now = False  # requests left over by a call sized to a deadline
        self._flushed_at = time.perf_counter()

    @property
    def running(self) -> int:
        """Lanes that have not left."""
        with self._cond:
            return len(self._active)

    def lane(self, index: int) -> Lane:
        """The backend view of lane ``index`` (0-based, below ``size``)."""
        return Lane(self, index)

    def leave(self, index: int) -> None:
        """Lane ``index`` is done (or failed): the others stop waiting for it."""
        with self._cond:
            self._active.discard(index)
            self._late.discard(index)
            self._pending.pop(index, None)
            self._cond.notify_all()

    def _stopping(self) -> bool:
        return self.stopping is not None and self.stopping()

    def submit(self, request: _Request) -> npt.NDArray[Any]:
        """Wait for the running lanes' requests (within limits), then serve them in one call.

        Raises:
            StoppingError: ``stopping`` became true before the request was served.
            LaneDeadlineError: An evaluation not served before the lane's deadline.
            Exception: The backend's error for this request.
        """
        cond = self._cond
        with cond:
            if request.lane not in self._active:
                raise RuntimeError(f"lane {request.lane} has left the lockstep")
            request.since = time.perf_counter()
            self._late.discard(request.lane)
            self._pending[request.lane] = request
            cond.notify_all()
            while not request.done:
                now = time.perf_counter()
                if not request.taken:
                    if self._stopping():
                        self._pending.pop(request.lane, None)
                        cond.notify_all()
                        raise StoppingError("shutting down: batched QAOA interrupted")
                    if request.kind == "estimate" and now >= request.deadline:
                        self._pending.pop(request.lane, None)
                        self.stats.dropped += 1
                        cond.notify_all()
                        raise LaneDeadlineError(
                            "time budget spent waiting for a batched evaluation"
                        )
                    if self._due(now):
                        self._flush(now)
                        continue
                cond.wait(self._sleep(now, request))
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _due(self, now: float) -> bool:
        """Whether a call should start now (lock held)."""
        if not self._pending or self._in_flight:
            return False
        if self._go_now or self._active - self._late <= set(self._pending):
            return True
        if now < self._patience_ends():
            return False
        missing = self._active - self._late - set(self._pending)
        self._late |= missing  # not waited for again until they ask
        self.stats.stragglers += 1
        logger.debug("batched call without lanes %s (not asked within the patience)", missing)
        return True

    def _sleep(self, now: float, request: _Request) -> float:
        """How long a waiting lane may sleep before something is due (lock held)."""
        wake = now + _POLL_S
        if not request.taken and request.kind == "estimate":
            wake = min(wake, request.deadline)
        if self._pending and not self._in_flight:
            wake = min(wake, self._patience_ends())
        return max(1e-3, wake - now)

    def _patience_ends(self) -> float:
        """When the pending requests stop waiting for lanes that have not asked (lock held).

        ``patience_s`` after the first of them (or after the last call), and no later
        than the latest moment the most urgent of them can still be served in time.
        """
        ends = min(max(r.since, self._flushed_at) for r in self._pending.values())
        ends += self.patience_s
        for r in self._pending.values():
            if r.deadline < ends:
                ends = min(ends, r.deadline - (self.costs.estimate(r.kind, r.rows) or 0.0))
        return ends

    def _select(self, now: float) -> list[_Request]:
        """The requests of the next call, in deadline order, sized to fit (lock held).

        One call serves one kind of request on one circuit. Evaluations that cannot
        finish before their own deadline are failed here (known call costs only).
        """
        ordered = sorted(self._pending.values(), key=lambda r: (r.deadline, r.lane))
        first = ordered[0]
        chosen: list[_Request] = []
        rows = 0
        # An evaluation must leave its job the time of its final sampling (one row).
        reserve = (self.costs.estimate("sample", 1) or 0.0) if first.kind == "estimate" else 0.0
        for r in ordered:
            if (r.kind, id(r.prepared), r.shots) != (first.kind, id(first.prepared), first.shots):
                continue
            alone = self.costs.estimate(r.kind, r.rows)
            if r.kind == "estimate" and alone is not None and now + alone + reserve > r.deadline:
                del self._pending[r.lane]
                self.stats.dropped += 1
                r.error = LaneDeadlineError(
                    f"a batched evaluation takes ~{alone:.3f}s, "
                    f"{max(0.0, r.deadline - now):.3f}s of the time budget left"
                )
                r.done = True
                continue
            if chosen:
                together = self.costs.estimate(r.kind, rows + r.rows)
                # Unknown cost: the first call is a probe of one request.
                if together is None or now + together + reserve > chosen[0].deadline:
                    break
            chosen.append(r)
            rows += r.rows
        return chosen

    def _flush(self, now: float) -> None:
        """Serve the next call's requests; the lock is released during the call (held)."""
        requests = self._select(now)
        for r in requests:
            r.taken = True
            del self._pending[r.lane]
        self._go_now = bool(self._pending)
        if not requests:
            self._cond.notify_all()
            return
        requests.sort(key=lambda r: r.lane)  # the backend sees lanes in order: deterministic
        self._in_flight = True
        self._cond.release()
        try:
            self._serve(requests)
        except BaseException as exc:  # a defect here must not leave lanes waiting forever
            if not isinstance(exc, StoppingError):
                logger.error("serving a batched %s failed: %s", requests[0].kind, exc)
            for r in requests:
                if not r.done:
                    r.error, r.done = exc, True
            if not isinstance(exc, Exception):
                raise
        finally:
            self._cond.acquire()
            self._in_flight = False
            self._flushed_at = time.perf_counter()
            self.stats.requests += len(requests)
            self._cond.notify_all()

    def _serve(self, group: list[_Request]) -> None:
        try:
            results = self._call(group)
        except StoppingError:
            raise
        except Exception as exc:
            if len(group) == 1:
                group[0].error, group[0].done = exc, True
                return
            logger.warning(
                "batched %s of %d jobs failed (%s): retrying job by job",
                group[0].kind,
                len(group),
                exc,
            )
            self.stats.fallbacks += 1
            for r in group:
                try:
                    r.result = self._call([r])[0]
                except StoppingError:
                    raise
                except Exception as single:
                    r.error = single
                r.done = True
            return
        for r, res in zip(group, results, strict=True):
            r.result, r.done = res, True

    def _call(self, group: list[_Request]) -> list[npt.NDArray[Any]]:
        """One backend call, abandoned (StoppingError) if ``stopping`` turns true meanwhile."""
        self.stats.backend_calls += 1
        if self.stopping is None:
            return self._timed_call(group)
        box: list[list[npt.NDArray[Any]] | BaseException] = []
        worker = threading.Thread(
            target=lambda: box.append(self._capture(group)), name="qaoa-batch-call", daemon=True
        )
        worker.start()
        while worker.is_alive():
            worker.join(_POLL_S)
            if worker.is_alive() and self._stopping():
                raise StoppingError("shutting down: batched backend call abandoned")
        outcome = box[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _capture(self, group: list[_Request]) -> list[npt.NDArray[Any]] | BaseException:
        try:
            return self._timed_call(group)
        except Exception as exc:  # handed to the waiting thread
            return exc

    def _timed_call(self, group: list[_Request]) -> list[npt.NDArray[Any]]:
        first = group[0]
        start = time.perf_counter()
        values = np.concatenate([r.values for r in group])
        seed = first.seed if len(group) == 1 else _joint_seed(group)
        sizes = np.cumsum([r.values.shape[0] for r in group])[:-1]
        if first.kind == "sample":
            bits = self.backend.sample(first.prepared, values, shots=first.shots, seed=seed)
            out = list(np.split(bits, sizes))
        else:
            observables: list[SparsePauliOp] = []
            for r in group:
                assert r.observable is not None  # every estimate request carries one
                observables += [r.observable] * r.values.shape[0]
            evs = self.backend.estimate_rows(
                first.prepared,
                observables,
                values,
                shots=first.shots,
                seed=seed,
            )
            out = list(np.split(evs, sizes))
        self.costs.observe(first.kind, int(values.shape[0]), time.perf_counter() - start)
        return out


def _joint_seed(group: Sequence[_Request]) -> int:
    """One simulator seed for a batched call, a function of its jobs' seeds and order."""
    return zlib.crc32(repr([(r.lane, r.seed) for r in group]).encode()) % (2**31 - 1)


class Lane:
    """One job's view of the backend inside a :class:`Lockstep` (same call signatures).

    Args:
        lockstep: The group.
        index: This job's lane.

    Attributes:
        deadline: ``time.perf_counter()`` by which this job's time budget is spent
            (set by the solve; evaluations still waiting then are not served).
    """

    def __init__(self, lockstep: Lockstep, index: int) -> None:
        self.lockstep = lockstep
        self.index = index
        self.deadline = math.inf

    @property
    def exact_expectation(self) -> bool:
        """As the real backend."""
        return self.lockstep.backend.exact_expectation

    def estimate(
        self,
        prepared: PreparedCircuit,
        observable: SparsePauliOp,
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        """Expectation values of this job's rows (served in the group's next call).

        Raises:
            LaneDeadlineError: Not served before :attr:`deadline`.
            StoppingError: The group was interrupted.
        """
        rows = np.atleast_2d(np.asarray(values, dtype=np.float64))
        request = _Request(
            self.index, "estimate", prepared, rows, shots, seed, observable, self.deadline
        )
        return np.asarray(self.lockstep.submit(request), dtype=np.float64)

    def sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        """Samples of this job's rows (served in the group's next call)."""
        rows = np.atleast_2d(np.asarray(values, dtype=np.float64))
        request = _Request(self.index, "sample", prepared, rows, shots, seed, None, self.deadline)
        return np.asarray(self.lockstep.submit(request), dtype=np.uint8)

    def leave(self) -> None:
        """This job makes no more backend calls (the others stop waiting for it)."""
        self.lockstep.leave(self.index)


_STOP_GRACE_S = 2.0
"""After ``stopping``, how long a group waits for lanes busy outside the lockstep."""


def run_lockstep(
    backend: QuantumBackend,
    tasks: Sequence[Callable[[Lane], T]],
    *,
    costs: CallCosts | None = None,
    stopping: Callable[[], bool] | None = None,
    patience_s: float = 0.25,
) -> tuple[list[T | Exception], LockstepStats]:
    """Run each task in its own thread on a lane of one :class:`Lockstep`.

    Args:
        backend: The backend every lane calls through.
        tasks: One solve each; a task's exception is its own result.
        costs: Call durations learned by earlier groups of the same circuit.
        stopping: Polled while waiting; once true the group ends within about
            ``_STOP_GRACE_S``: unfinished tasks get a
            :class:`~qbridge.errors.StoppingError` as their result.
        patience_s: See :class:`Lockstep`.

    Returns:
        Each task's result or exception, in order, and the group's counters.
    """
    lockstep = Lockstep(
        backend,
        len(tasks),
        costs=costs if costs is not None else CallCosts(),
        patience_s=patience_s,
        stopping=stopping,
    )
    results: list[T | Exception] = [
        StoppingError("shutting down: batched QAOA interrupted") for _ in tasks
    ]

    def run(i: int) -> None:
        try:
            results[i] = tasks[i](lockstep.lane(i))
        except Exception as exc:  # this job's failure, reported as its outcome
            results[i] = exc
        finally:
            lockstep.leave(i)

    threads = [
        threading.Thread(target=run, args=(i,), name=f"qaoa-lane-{i}", daemon=True)
        for i in range(len(tasks))
    ]
    for t in threads:
        t.start()
    stop_seen: float | None = None
    for t in threads:
        while t.is_alive():
            t.join(_POLL_S)
            if stopping is None or not stopping():
                continue
            stop_seen = stop_seen if stop_seen is not None else time.monotonic()
            if time.monotonic() - stop_seen > _STOP_GRACE_S:
                # A lane stuck outside the lockstep: not waited for (its result stays
                # a StoppingError; the daemon thread ends with the process).
                logger.warning("stopping: %s left running in the background", t.name)
                break
    return list(results), lockstep.stats
