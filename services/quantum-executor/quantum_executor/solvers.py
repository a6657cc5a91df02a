"""Which quantum solver takes a work item: backends and solvers cached per process.

No Kafka here. Building a backend (simulator, fake device, noise model, pass
manager) is expensive, so each backend and its :class:`QaoaSolver` are built once
per process and reused; the transpile cache is process-wide too. Nothing is
per-instance in the sense of the consumer group: any replica can take any item.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qbridge.errors import BackendUnavailableError, ConfigurationError, QBridgeError
from qbridge.executor.progress import ProgressSettings, ProgressSink, ProgressTracker, RunProgress
from qbridge.problems.base import Problem
from qbridge.problems.maxcut import MaxCut
from qbridge.qml.solvers import QuantumKernelSolver
from qbridge.solvers.base import Budget, Eligibility, Outcome, Solver
from qbridge.solvers.quantum import QaoaSettings, QaoaSolver, QuantumBackend, make_backend
from qbridge.solvers.quantum.batching import Lane
from qbridge.solvers.quantum.checkpoint import CheckpointStore
from qbridge.solvers.quantum.qaoa import LaneSolver

logger = logging.getLogger(__name__)

BackendFactory = Callable[..., QuantumBackend]

_CALIBRATION_NODES = 14
"""Prewarm times a QAOA circuit this large on statevector backends (a few tenths of a second)."""


@dataclass(frozen=True)
class FaultInjection:
    """Failure injection wired to the backends' ``fail_*`` options (for platform tests).

    Attributes:
        mode: ``unavailable``, ``transient`` or ``slow``; ``None`` disables injection.
        on: Which backend calls fail: ``estimate``, ``sample`` or ``any``.
        after: Calls that succeed before failures start (per backend, per process).
        times: Failures before the backend recovers; ``None`` = forever.
        slow_s: Delay per call in ``slow`` mode.
        backends: Backends affected; empty means all.
    """

    mode: str | None = None
    on: str = "any"
    after: int = 0
    times: int | None = None
    slow_s: float = 2.0
    backends: frozenset[str] = field(default_factory=frozenset)

    def options_for(self, backend: str) -> dict[str, Any]:
        """The :func:`make_backend` fault options for ``backend`` (empty if unaffected)."""
        if self.mode is None or (self.backends and backend not in self.backends):
            return {}
        return {
            "fail_with": self.mode,
            "fail_on": self.on,
            "fail_after": self.after,
            "fail_times": self.times,
            "slow_s": self.slow_s,
        }


class QuantumSolvers:
    """Builds and caches one :class:`QaoaSolver` per backend name.

    Args:
        allowed: Backend names this executor serves (others: ``backend_unavailable``).
        qaoa: QAOA settings shared by every backend.
        backend_options: Extra :func:`make_backend` options per backend name.
        faults: Failure injection.
        backend_factory: Builds a backend (``make_backend``; replaced in tests).
        checkpoints: Durable per-iteration QAOA checkpoints (None: a redelivered item
            starts its optimizer loop again).
        progress: Where throttled progress events of QAOA runs go (None: none).
        progress_settings: How often a run reports.
        template_max_qubits: Dense-template limit of cross-job batches (see
            :class:`QaoaSolver`).
    """

    def __init__(
        self,
        allowed: Iterable[str],
        qaoa: QaoaSettings | None = None,
        *,
        backend_options: Mapping[str, Mapping[str, Any]] | None = None,
        faults: FaultInjection | None = None,
        backend_factory: BackendFactory = make_backend,
        checkpoints: CheckpointStore | None = None,
        progress: ProgressSink | None = None,
        progress_settings: ProgressSettings | None = None,
        template_max_qubits: int = 12,
    ) -> None:
        self.allowed = frozenset(allowed)
        self.qaoa = qaoa or QaoaSettings()
        self.backend_options = {k: dict(v) for k, v in (backend_options or {}).items()}
        self.faults = faults or FaultInjection()
        self._factory = backend_factory
        self.checkpoints = checkpoints
        self.progress = progress
        self.progress_settings = progress_settings or ProgressSettings()
        self.template_max_qubits = template_max_qubits
        # The solvers checkpoint into the tracker, which stores (when durable checkpoints
        # are configured) and then reports the run's progress.
        self._store: CheckpointStore | None = (
            ProgressTracker(checkpoints) if progress is not None else checkpoints
        )
        self._solvers: dict[str, QaoaSolver] = {}
        self._lock = threading.Lock()

    def solver(self, backend: str) -> QaoaSolver:
        """The process-wide solver of ``backend``, built on first use.

        Raises:
            BackendUnavailableError: Not served here, or it cannot be built (unknown
                name, bad options, provider unreachable): the orchestrator reroutes.
        """
        if backend not in self.allowed:
            raise BackendUnavailableError(
                f"quantum backend {backend!r} is not served here "
                f"(available: {', '.join(sorted(self.allowed))})"
            )
        with self._lock:
            cached = self._solvers.get(backend)
            if cached is not None:
                return cached
            options = {**self.backend_options.get(backend, {}), **self.faults.options_for(backend)}
            try:
                built = self._factory(backend, **options)
            except ConfigurationError as exc:
                logger.error("cannot build quantum backend %s: %s", backend, exc)
                raise BackendUnavailableError(
                    f"quantum backend {backend!r} is misconfigured: {exc.message}"
                ) from exc
            if options.get("fail_with"):
                logger.warning("failure injection on %s: %s", backend, options)
            solver = QaoaSolver(
                built,
                self.qaoa,
                checkpoints=self._store,
                template_max_qubits=self.template_max_qubits,
            )
            self._solvers[backend] = solver
            return solver

    def for_item(self, item: Mapping[str, Any]) -> Solver:
        """The solver of a work item (by its ``backend`` field; classification: quantum kernel).

        With a checkpoint store, a QAOA solver checkpoints under ``job_id:attempt``, so
        a redelivered item resumes its optimizer loop; with a progress sink, the run
        reports its progress from those checkpoints.
        """
        backend = str(item.get("backend") or "")
        if item.get("problem_type") == QuantumKernelSolver.problem_type:
            self.solver(backend)  # served here? (raises backend_unavailable otherwise)
            return QuantumKernelSolver(backend=backend)
        solver = self.solver(backend)
        if self._store is None or "job_id" not in item:
            return solver
        key = f"{item['job_id']}:{item.get('attempt', 0)}"
        if isinstance(self._store, ProgressTracker) and self.progress is not None:
            run = RunProgress(item, self.progress, self.progress_settings)
            return _Checkpointed(solver, key, self._store, run)
        return _Checkpointed(solver, key)

    def prewarm(self, backends: Iterable[str]) -> None:
        """Build backends ahead of the first job, and run a tiny solve where it is safe.

        The tiny solve (2-node MaxCut) warms the simulator and the transpiler; on a
        statevector backend a 14-node ring follows, so the solver can predict a large
        circuit's evaluation time from the first work item on (a job whose budget
        cannot fit one evaluation fails at once instead of holding the executor).
        Both are skipped on backends with failure injection, whose call counters
        they would use. Failures are logged, never raised: the work item will
        report them.
        """
        for name in backends:
            try:
                solver = self.solver(name)
                solver.backend.pass_manager()
                if not self.faults.options_for(name):
                    solver.solve(MaxCut(2, ((0, 1, 1.0),)), Budget(time_limit_s=5.0, shots=64))
                    if solver.backend.statevector_cost:
                        n = min(_CALIBRATION_NODES, solver.backend.max_qubits)
                        ring = MaxCut(n, tuple((i, (i + 1) % n, 1.0) for i in range(n)))
                        solver.solve(ring, Budget(time_limit_s=5.0, shots=64))
                logger.info("prewarmed quantum backend %s", name)
            except (QBridgeError, OSError) as exc:
                logger.warning("prewarming %s failed: %s", name, exc)


class _Checkpointed(Solver):
    """A QAOA solver bound to the checkpoint key (and progress) of one work item."""

    def __init__(
        self,
        inner: QaoaSolver,
        key: str,
        tracker: ProgressTracker | None = None,
        run: RunProgress | None = None,
    ) -> None:
        self.inner, self.key = inner, key
        self.tracker, self.run = tracker, run
        self.name, self.route = inner.name, inner.route

    def eligibility(self, problem: Problem) -> Eligibility:
        return self.inner.eligibility(problem)

    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        return self.solve_lane(problem, budget, None)

    def solve_lane(self, problem: Problem, budget: Budget, lane: Lane | None) -> Outcome:
        """Solve with this item's checkpoints and progress, alone or on a batch lane."""
        if self.tracker is None or self.run is None:
            return self.inner.solve(problem, budget, checkpoint_key=self.key, lane=lane)
        with self.tracker.watch(self.key, self.run) as run:
            try:
                return self.inner.solve(problem, budget, checkpoint_key=self.key, lane=lane)
            except Exception:
                run.failed()
                raise

    def batch_key(self, problem: Problem, budget: Budget) -> Hashable | None:
        """The inner solver's key: items of one backend batch across checkpoint keys."""
        return self.inner.batch_key(problem, budget)

    def solve_group(
        self,
        members: Sequence[tuple[LaneSolver, Problem, Budget]],
        *,
        stopping: Callable[[], bool] | None = None,
    ) -> list[Outcome | Exception]:
        """Delegated: each member solves with its own checkpoint key and progress."""
        return self.inner.solve_group(members, stopping=stopping)
