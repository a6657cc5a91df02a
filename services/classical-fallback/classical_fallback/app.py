"""classical-fallback's Kafka edge: work item -> `execute` (qbridge.solvers.worker) -> outcomes.

Solver failures are never dead-lettered: they become ``error`` outcomes with their
error class, and the orchestrator decides. Only undecodable messages (and a
defect in encoding an outcome) reach the DLQ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from classical_fallback.solvers import ClassicalSolvers
from qbridge.bus import BusConsumer, BusProducer, Record
from qbridge.bus import headers as h
from qbridge.errors import CodecError, SolverError
from qbridge.service import log_context
from qbridge.solvers.worker import WorkerSettings, error_record, execute, observe
from qbridge.topics import TopicSpec

logger = logging.getLogger(__name__)

SERVICE = "classical-fallback"


class ClassicalApp:
    """Consumes classical work items, produces solver outcomes keyed by job id."""

    def __init__(
        self,
        consumer: BusConsumer,
        producer: BusProducer,
        outcomes_topic: TopicSpec,
        solvers: ClassicalSolvers,
        *,
        worker: WorkerSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Wire the app.

        Args:
            consumer: Subscribed to the classical work topic.
            producer: Producer of outcomes (flushed by the consumer before committing).
            outcomes_topic: Where outcomes go.
            solvers: Chooses the solver of a work item.
            worker: Budget rules.
            clock: Wall clock.
        """
        self.consumer = consumer
        self.producer = producer
        self.outcomes_topic = outcomes_topic
        self.solvers = solvers
        self.worker = worker or WorkerSettings()
        self.clock = clock
        self.handled = 0
        self._running = False

    def handle(self, record: Record) -> None:
        """Run one work item; emit ``started`` at once and the result when done."""
        item = record.value
        job_id = item["job_id"]
        headers = h.propagate(
            record.headers, **{h.CORRELATION_ID: item["correlation_id"], h.JOB_ID: job_id}
        )

        def emit(outcome: dict[str, Any]) -> None:
            try:
                self.producer.send(self.outcomes_topic, outcome, key=job_id, headers=headers)
            except CodecError as exc:
                if outcome["status"] == "started":
                    raise
                # A solver result that does not fit the schema is a defect to report,
                # not a reason to leave the orchestrator waiting for its timeout.
                logger.error("outcome of %s is not encodable: %s", item["work_id"], exc)
                defect = SolverError(f"outcome not encodable: {exc}")
                outcome = error_record(item, defect, self.clock())
                self.producer.send(self.outcomes_topic, outcome, key=job_id, headers=headers)
            observe(outcome, SERVICE, item.get("backend") or "ortools")

        with log_context(
            job_id=job_id, correlation_id=item["correlation_id"], work_id=item["work_id"]
        ):
            execute(item, self.solvers.for_item, self.clock(), emit=emit, settings=self.worker)
        self.handled += 1

    def run(self) -> None:
        """Consume until :meth:`stop`; the work item in hand is finished first."""
        self._running = True
        try:
            self.consumer.run(self.handle)
        finally:
            self._running = False

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread- and signal-safe)."""
        self.consumer.stop()

    def ready(self) -> tuple[bool, str]:
        """Ready while the loop runs (a long solve is not a stall)."""
        if not self._running:
            return False, "not consuming"
        return True, f"handled={self.handled}"

    def close(self) -> None:
        """Commit stored offsets, leave the group, flush the producer."""
        self.consumer.close()
        self.producer.close()
