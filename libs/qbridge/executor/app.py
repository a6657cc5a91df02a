"""The one executor app: a consumer group around :func:`qbridge.executor.worker.execute`.

quantum-executor and classical-fallback are the same app with different solver
providers (one solver interface, interchangeable implementations). Solver
failures are never dead-lettered: they become ``error`` outcomes with their error
class and the orchestrator retries, reroutes or degrades. Only undecodable
messages (and a defect in encoding an outcome) reach the DLQ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from qbridge.bus import (
    BusConsumer,
    BusProducer,
    DeadLetterPublisher,
    KafkaSettings,
    Record,
    ensure_topics,
)
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec, default_registry
from qbridge.errors import CodecError, SolverError
from qbridge.executor.worker import WorkerSettings, error_record, execute, observe
from qbridge.service.lifecycle import ServiceRuntime
from qbridge.service.logs import log_context
from qbridge.service.settings import ServiceSettings
from qbridge.solvers.base import Solver
from qbridge.topics import DEAD_LETTERS, SOLVER_OUTCOMES, TopicSpec

logger = logging.getLogger(__name__)

_ITEMS_PER_SLOT = 16
"""An executor's batch holds at most this many work items per concurrent solve."""


class SolverProvider(Protocol):
    """Chooses (and caches) the solver of a work item."""

    def for_item(self, item: Mapping[str, Any]) -> Solver:
        """The solver for ``item`` (raises a classified error if none is served)."""
        ...

    def prewarm(self, backends: Iterable[str]) -> None:
        """Build expensive solvers ahead of the first work item."""
        ...


class ExecutorSettings(Protocol):
    """What :func:`serve_executor` needs from a service's settings."""

    consumer_group: str
    work_topic: str
    outcomes_topic: str
    dlq_topic: str
    create_topics: bool
    concurrency: int
    kafka: KafkaSettings


class ExecutorApp:
    """Consumes work items, produces solver outcomes keyed by job id."""

    def __init__(
        self,
        service: str,
        consumer: BusConsumer,
        producer: BusProducer,
        outcomes_topic: TopicSpec,
        solvers: SolverProvider,
        *,
        worker: WorkerSettings | None = None,
        prewarm: Iterable[str] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = 1,
    ) -> None:
        """Wire the app.

        Args:
            service: Service name (metrics, logs).
            consumer: Subscribed to the work topic.
            producer: Producer of outcomes (flushed by the consumer before committing).
            outcomes_topic: Where outcomes go.
            solvers: Chooses the solver of a work item.
            worker: Budget rules.
            prewarm: Backends built before the first message is taken.
            clock: Wall clock.
            concurrency: Work items of a batch solved at the same time (threads: CP-SAT
                and the simulators release the GIL while they compute).
        """
        self.service = service
        self.consumer = consumer
        self.producer = producer
        self.outcomes_topic = outcomes_topic
        self.solvers = solvers
        self.worker = worker or WorkerSettings()
        self.prewarm = tuple(prewarm)
        self.clock = clock
        self.handled = 0
        self.concurrency = max(1, concurrency)
        self._pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{service}-solve")
            if self.concurrency > 1
            else None
        )
        self._running = False
        self._warm = not self.prewarm

    def handle(self, record: Record) -> None:
        """Run one work item; emit ``started`` at once and the result when done."""
        item = record.value
        job_id = item["job_id"]
        backend = str(item.get("backend") or "")
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
            observe(outcome, self.service, backend)

        with log_context(
            job_id=job_id, correlation_id=item["correlation_id"], work_id=item["work_id"]
        ):
            execute(item, self.solvers.for_item, self.clock(), emit=emit, settings=self.worker)
        self.handled += 1

    def handle_batch(self, records: Sequence[Record]) -> None:
        """Run a batch of work items, ``concurrency`` at a time (the consumer's batch handler).

        Returns once every item's outcome is produced; the consumer then flushes once
        and stores the batch's offsets (in order per partition), so an instance killed
        mid-batch re-runs the batch's items: at-least-once, as for single items.

        Raises:
            Exception: The first item failure (an outcome that could not be produced);
                the consumer then handles the batch item by item.
        """
        if self._pool is None or len(records) == 1:
            for record in records:
                self.handle(record)
            return
        futures = [self._pool.submit(self.handle, r) for r in records]
        errors = [f.exception() for f in futures]  # waits for every item
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def run(self) -> None:
        """Prewarm, then consume until :meth:`stop` (the work item in hand is finished)."""
        self._running = True
        try:
            if self.prewarm and not self.consumer.stopping:
                self.solvers.prewarm(self.prewarm)
            self._warm = True
            self.consumer.run(self.handle, batch_handler=self.handle_batch)
        finally:
            self._running = False

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread- and signal-safe)."""
        self.consumer.stop()

    def ready(self) -> tuple[bool, str]:
        """Ready once prewarmed and while the loop runs (a long solve is not a stall)."""
        if not self._running:
            return False, "not consuming"
        if not self._warm:
            return False, "prewarming backends"
        return True, f"handled={self.handled}"

    def close(self) -> None:
        """Commit stored offsets, leave the group, flush the producer."""
        self.consumer.close()
        self.producer.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def serve_executor(
    service: str,
    settings: ExecutorSettings,
    runtime_settings: ServiceSettings,
    work_spec: TopicSpec,
    solvers: SolverProvider,
    worker: WorkerSettings,
    prewarm: Iterable[str] = (),
) -> int:
    """The whole ``__main__`` of an executor service: wire, serve until SIGTERM.

    Args:
        service: Service name.
        settings: Topic, group and Kafka settings.
        runtime_settings: Logging/HTTP settings (usually the same object as ``settings``).
        work_spec: The work topic's spec (its name may be overridden by settings).
        solvers: The solver provider.
        worker: Budget rules.
        prewarm: Backends to build before consuming.

    Returns:
        The process exit code.
    """
    runtime = ServiceRuntime(service, runtime_settings)
    kafka = settings.kafka
    work = TopicSpec(settings.work_topic, work_spec.record, work_spec.partitions)
    outcomes = TopicSpec(
        settings.outcomes_topic, SOLVER_OUTCOMES.record, SOLVER_OUTCOMES.partitions
    )
    dlq_topic = TopicSpec(
        settings.dlq_topic, DEAD_LETTERS.record, DEAD_LETTERS.partitions, DEAD_LETTERS.retention_ms
    )
    if settings.create_topics:
        ensure_topics(kafka, [work, outcomes, dlq_topic])
    codec = AvroCodec(default_registry())
    producer = BusProducer(kafka, codec, client_id=service)
    # A batch is finished before its offsets are stored: cap it so a batch of long
    # solves stays well inside max.poll.interval.ms (items x time limit / concurrency).
    batch_max = min(kafka.batch_max_messages, _ITEMS_PER_SLOT * max(1, settings.concurrency))
    consumer = BusConsumer(
        kafka.model_copy(update={"batch_max_messages": batch_max}),
        settings.consumer_group,
        [work],
        codec,
        DeadLetterPublisher(producer, service, dlq_topic),
        producer=producer,
    )
    app = ExecutorApp(
        service,
        consumer,
        producer,
        outcomes,
        solvers,
        worker=worker,
        prewarm=prewarm,
        concurrency=settings.concurrency,
    )
    return runtime.serve(app.run, stop=app.stop, ready=app.ready, on_exit=app.close)
