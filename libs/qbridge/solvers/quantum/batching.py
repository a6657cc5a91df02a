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
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from qiskit.quantum_info import SparsePauliOp

from qbridge.solvers.quantum.base import BitMatrix, FloatArray, PreparedCircuit, QuantumBackend

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Request:
    lane: int
    kind: str  # "estimate" or "sample"
    prepared: PreparedCircuit
    values: FloatArray
    shots: int
    seed: int
    observable: SparsePauliOp | None = None
    result: npt.NDArray[Any] | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class LockstepStats:
    """Counters of one lockstep group (for provenance, tests and benchmarks).

    Attributes:
        backend_calls: Batched calls made (fallback calls included).
        requests: Evaluation and sampling requests served.
        fallbacks: Batched calls that failed and were retried request by request.
    """

    backend_calls: int = 0
    requests: int = 0
    fallbacks: int = 0


@dataclass
class Lockstep:
    """The meeting point of ``size`` lanes on one backend.

    Args:
        backend: The real backend.
        size: Lanes taking part; each must end with :meth:`leave`.
    """

    backend: QuantumBackend
    size: int
    stats: LockstepStats = field(default_factory=LockstepStats)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._active = self.size
        self._pending: dict[int, _Request] = {}

    def lane(self, index: int) -> Lane:
        """The backend view of lane ``index`` (0-based, below ``size``)."""
        return Lane(self, index)

    def leave(self, index: int) -> None:
        """Lane ``index`` is done (or failed): the others stop waiting for it."""
        with self._cond:
            self._active -= 1
            self._pending.pop(index, None)
            if self._pending and len(self._pending) >= self._active:
                self._flush()

    def submit(self, request: _Request) -> npt.NDArray[Any]:
        """Wait for every running lane's request, then serve them all in one call."""
        with self._cond:
            self._pending[request.lane] = request
            if len(self._pending) >= self._active:
                self._flush()
            while not request.done:
                self._cond.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _flush(self) -> None:
        # Called with the lock held by the last lane to arrive (the others wait), so
        # the backend sees the lanes' requests in lane order: deterministic batches.
        requests = [self._pending[i] for i in sorted(self._pending)]
        self._pending.clear()
        groups: dict[tuple[str, int, int], list[_Request]] = {}
        for r in requests:
            groups.setdefault((r.kind, id(r.prepared), r.shots), []).append(r)
        for group in groups.values():
            try:
                self._serve(group)
            except Exception as exc:  # a defect here must not leave lanes waiting forever
                logger.error("serving a batched %s failed: %s", group[0].kind, exc, exc_info=True)
                for r in group:
                    if not r.done:
                        r.error, r.done = exc, True
        self.stats.requests += len(requests)
        self._cond.notify_all()

    def _serve(self, group: list[_Request]) -> None:
        try:
            results = self._call(group)
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
                except Exception as single:
                    r.error = single
                r.done = True
            return
        for r, res in zip(group, results, strict=True):
            r.result, r.done = res, True

    def _call(self, group: list[_Request]) -> list[npt.NDArray[Any]]:
        first = group[0]
        self.stats.backend_calls += 1
        values = np.concatenate([r.values for r in group])
        seed = first.seed if len(group) == 1 else _joint_seed(group)
        sizes = np.cumsum([r.values.shape[0] for r in group])[:-1]
        if first.kind == "sample":
            bits = self.backend.sample(first.prepared, values, shots=first.shots, seed=seed)
            return list(np.split(bits, sizes))
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
        return list(np.split(evs, sizes))


def _joint_seed(group: Sequence[_Request]) -> int:
    """One simulator seed for a batched call, a function of its jobs' seeds and order."""
    return zlib.crc32(repr([(r.lane, r.seed) for r in group]).encode()) % (2**31 - 1)


class Lane:
    """One job's view of the backend inside a :class:`Lockstep` (same call signatures).

    Args:
        lockstep: The group.
        index: This job's lane.
    """

    def __init__(self, lockstep: Lockstep, index: int) -> None:
        self.lockstep = lockstep
        self.index = index

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
        """Expectation values of this job's rows (served in the group's next call)."""
        rows = np.atleast_2d(np.asarray(values, dtype=np.float64))
        request = _Request(self.index, "estimate", prepared, rows, shots, seed, observable)
        return np.asarray(self.lockstep.submit(request), dtype=np.float64)

    def sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        """Samples of this job's rows (served in the group's next call)."""
        rows = np.atleast_2d(np.asarray(values, dtype=np.float64))
        request = _Request(self.index, "sample", prepared, rows, shots, seed)
        return np.asarray(self.lockstep.submit(request), dtype=np.uint8)


def run_lockstep(
    backend: QuantumBackend, tasks: Sequence[Callable[[Lane], T]]
) -> tuple[list[T | Exception], LockstepStats]:
    """Run each task in its own thread on a lane of one :class:`Lockstep`.

    Args:
        backend: The backend every lane calls through.
        tasks: One solve each; a task's exception is its own result.

    Returns:
        Each task's result or exception, in order, and the group's counters.
    """
    lockstep = Lockstep(backend, len(tasks))
    results: list[T | Exception] = [RuntimeError("not run")] * len(tasks)

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
    for t in threads:
        t.join()
    return results, lockstep.stats
