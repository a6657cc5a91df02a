"""Progress of long variational runs: throttled ``qbridge.JobProgress`` events. No Kafka.

The QAOA optimizer loop already saves a :class:`~qbridge.solvers.quantum.checkpoint.LoopCheckpoint`
after every iteration. :class:`ProgressTracker` is a checkpoint store that wraps the
durable one: each save is stored first (durably, as before) and then handed to the
:class:`RunProgress` of the work item being run under that key, which turns it into a
progress event when one is due. A load that finds a checkpoint (a redelivery after a
crash) marks the run as resumed; the delete at the end of a run reports it finished.

Progress never slows or fails the solver: events are throttled (at most one per
``interval_s`` while optimizing; the first event of a run, the end and a failure are
always sent), the sink is fire-and-forget and anything it raises is logged and
dropped. Progress is telemetry, not part of any outcome's delivery guarantee: a lost
event is replaced by the next one, and the store keeps only the newest per job (by
attempt, run start and sequence number), so duplicates and stale events are harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from qbridge.contracts.records import JobProgress, ProgressPhase
from qbridge.solvers.quantum.checkpoint import CheckpointStore, LoopCheckpoint

logger = logging.getLogger(__name__)

ProgressSink = Callable[[JobProgress], None]
"""Takes an event and returns at once (fire-and-forget); should not raise."""


@dataclass(frozen=True)
class ProgressSettings:
    """How often a run reports.

    Attributes:
        interval_s: At most one ``optimizing`` event per this many seconds per run
            (0: every iteration). The first event of a run (also the first after a
            resume), ``finished`` and ``failed`` are always sent.
    """

    interval_s: float = 1.0


class RunProgress:
    """The progress reporter of ONE run of one work item (not shared between threads).

    Args:
        item: The work item (decoded ``qbridge.WorkItem``); its identifying fields are
            copied into every event.
        sink: Where events go.
        settings: Throttling.
        clock: Wall clock (event times).
        monotonic: Monotonic clock (throttling).
    """

    def __init__(
        self,
        item: Mapping[str, Any],
        sink: ProgressSink,
        settings: ProgressSettings | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = str(item["job_id"])
        self.work_id = str(item.get("work_id") or "")
        self.attempt = int(item.get("attempt") or 0)
        self.tenant = str(item.get("tenant") or "")
        self.correlation_id = str(item.get("correlation_id") or "")
        self.backend = str(item.get("backend") or "")
        self.sink = sink
        self.settings = settings or ProgressSettings()
        self._clock = clock
        self._monotonic = monotonic
        self.run_started_at = clock()
        self.resumed_from: int | None = None
        self.last: LoopCheckpoint | None = None
        self.seq = 0
        self.sent = 0
        self._last_sent_at: float | None = None

    def resumed(self, checkpoint: LoopCheckpoint) -> None:
        """The run continues from ``checkpoint`` (found on redelivery)."""
        self.resumed_from = checkpoint.iteration
        self.last = checkpoint

    def iteration(self, checkpoint: LoopCheckpoint) -> None:
        """An iteration was checkpointed; report it if an event is due."""
        self.last = checkpoint
        now = self._monotonic()
        due = self._last_sent_at is None or now - self._last_sent_at >= self.settings.interval_s
        if due:
            self._send(ProgressPhase.OPTIMIZING, now)

    def finished(self) -> None:
        """The optimizer loop and the final sampling are done."""
        if self.last is not None:
            self._send(ProgressPhase.FINISHED, self._monotonic())

    def failed(self) -> None:
        """The run raised after at least one iteration (its last position is reported)."""
        if self.last is not None:
            self._send(ProgressPhase.FAILED, self._monotonic())

    def event(self, phase: ProgressPhase) -> JobProgress:
        """The event for the last checkpoint in ``phase`` (next sequence number).

        Raises:
            ValueError: No checkpoint seen yet.
        """
        cp = self.last
        if cp is None:
            raise ValueError(f"no progress of {self.work_id} yet")
        self.seq += 1
        return JobProgress(
            job_id=self.job_id,
            work_id=self.work_id,
            attempt=self.attempt,
            tenant=self.tenant,
            correlation_id=self.correlation_id,
            backend=self.backend,
            phase=phase,
            iteration=cp.iteration,
            max_iterations=cp.maxiter,
            best_energy=cp.best_energy,
            resumed_from_iteration=self.resumed_from,
            backend_calls=cp.calls,
            shots_used=cp.shots_used,
            run_started_at=self.run_started_at,
            seq=self.seq,
            emitted_at=self._clock(),
        )

    def _send(self, phase: ProgressPhase, now: float) -> None:
        self._last_sent_at = now
        try:
            self.sink(self.event(phase))
            self.sent += 1
        except Exception as exc:  # telemetry must never fail the solve
            logger.warning("progress of %s not sent: %s", self.work_id, exc)


class ProgressTracker:
    """A checkpoint store that reports progress, around an optional durable store.

    Saves, loads and deletes go to ``inner`` first (unchanged durability); then the
    :class:`RunProgress` watching the key, if any, is told. Without ``inner`` nothing
    is stored (no resume) but progress is still reported.

    Args:
        inner: The durable checkpoint store (None: progress only).
    """

    def __init__(self, inner: CheckpointStore | None = None) -> None:
        self.inner = inner
        self._runs: dict[str, RunProgress] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def watch(self, key: str, run: RunProgress) -> Iterator[RunProgress]:
        """Report the checkpoints saved under ``key`` to ``run`` while the block runs."""
        with self._lock:
            self._runs[key] = run
        try:
            yield run
        finally:
            with self._lock:
                if self._runs.get(key) is run:
                    del self._runs[key]

    def _run(self, key: str) -> RunProgress | None:
        with self._lock:
            return self._runs.get(key)

    def load(self, key: str) -> LoopCheckpoint | None:
        """See :class:`~qbridge.solvers.quantum.checkpoint.CheckpointStore`."""
        checkpoint = self.inner.load(key) if self.inner is not None else None
        run = self._run(key)
        if checkpoint is not None and run is not None:
            run.resumed(checkpoint)
        return checkpoint

    def save(self, key: str, checkpoint: LoopCheckpoint) -> None:
        """See :class:`~qbridge.solvers.quantum.checkpoint.CheckpointStore`."""
        if self.inner is not None:
            self.inner.save(key, checkpoint)
        run = self._run(key)
        if run is not None:
            run.iteration(checkpoint)

    def delete(self, key: str) -> None:
        """See :class:`~qbridge.solvers.quantum.checkpoint.CheckpointStore`."""
        if self.inner is not None:
            self.inner.delete(key)
        run = self._run(key)
        if run is not None:
            run.finished()
