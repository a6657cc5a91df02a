"""The one executor app: a consumer group around :func:`qbridge.executor.worker.execute`.

quantum-executor and classical-fallback are the same app with different solver
providers (one solver interface, interchangeable implementations). Solver
failures are never dead-lettered: they become ``error`` outcomes with their error
class and the orchestrator retries, reroutes or degrades. Only undecodable
messages (and a defect in encoding an outcome) reach the DLQ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message
from prometheus_client import Counter

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
from qbridge.contracts.records import JobProgress
from qbridge.errors import CodecError, DeliveryError, QBridgeError, SolverError, StoppingError
from qbridge.executor.announce import PendingStart, StartAnnouncer
from qbridge.executor.worker import (
    WorkerSettings,
    batch_groups,
    error_record,
    execute,
    execute_group,
    observe,
)
from qbridge.service.lifecycle import ServiceRuntime
from qbridge.service.logs import log_context
from qbridge.service.settings import ServiceSettings
from qbridge.solvers.base import Solver
from qbridge.topics import DEAD_LETTERS, JOB_PROGRESS, SOLVER_OUTCOMES, TopicSpec

logger = logging.getLogger(__name__)

PROGRESS_EVENTS = Counter(
    "qbridge_progress_events_total",
    "Progress events of variational runs by result: sent (handed to the producer), "
    "delivered, dropped (not handed over: queue full, not encodable) or failed (delivery).",
    ["result"],
)

# Progress is telemetry: its own producer (never flushed before an offset is stored, so
# it cannot delay or fail a batch), leader acks only, and a short delivery timeout.
_PROGRESS_PRODUCER = {
    "enable.idempotence": False,
    "acks": 1,
    "linger.ms": 20,
    "delivery.timeout.ms": 15_000,
    "queue.buffering.max.messages": 10_000,
}

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


_DROP_LOG_INTERVAL_S = 60.0


class ProgressPublisher:
    """Fire-and-forget producer of ``qbridge.JobProgress`` events (a progress sink).

    :meth:`__call__` never blocks and never raises: a full local queue or an
    unencodable event is dropped (counted), delivery failures are counted and logged
    from the delivery callback. The outcomes' producer and its flush-before-commit are
    untouched, so at-least-once delivery of outcomes does not depend on this topic.

    Args:
        producer: A producer used for progress only.
        topic: The progress topic.
    """

    def __init__(self, producer: BusProducer, topic: TopicSpec = JOB_PROGRESS) -> None:
        self.producer = producer
        self.topic = topic
        self._failed_since_drain = 0
        self._dropped = 0
        self._dropped_logged_at = -_DROP_LOG_INTERVAL_S

    @classmethod
    def create(
        cls, kafka: KafkaSettings, service: str, topic: TopicSpec = JOB_PROGRESS
    ) -> ProgressPublisher:
        """A publisher with its own producer (see ``_PROGRESS_PRODUCER``)."""
        codec = AvroCodec(default_registry())
        producer = BusProducer(
            kafka, codec, client_id=f"{service}-progress", overrides=_PROGRESS_PRODUCER
        )
        return cls(producer, topic)

    def __call__(self, event: JobProgress) -> None:
        """Hand ``event`` to the producer (keyed by job id) and return at once."""
        try:
            value = self.producer.codec.encode(self.topic.record, event.to_avro())
            self.producer.send_raw(
                self.topic.name,
                value,
                key=event.job_id,
                headers=h.propagate(
                    {}, **{h.CORRELATION_ID: event.correlation_id, h.JOB_ID: event.job_id}
                ),
                deadline_s=0.0,
                on_delivery=self._delivered,
            )
        except QBridgeError as exc:
            PROGRESS_EVENTS.labels("dropped").inc()
            self._dropped += 1
            now = time.monotonic()
            if now - self._dropped_logged_at >= _DROP_LOG_INTERVAL_S:  # no log flood
                logger.warning(
                    "%d progress event(s) dropped, latest of %s: %s",
                    self._dropped,
                    event.work_id,
                    exc,
                )
                self._dropped, self._dropped_logged_at = 0, now
            return
        PROGRESS_EVENTS.labels("sent").inc()
        if self._failed_since_drain:
            self._drain()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            PROGRESS_EVENTS.labels("delivered").inc()
        else:
            PROGRESS_EVENTS.labels("failed").inc()
            self._failed_since_drain += 1

    def _drain(self) -> None:
        # The producer keeps failed deliveries until a flush reports them; a zero-timeout
        # flush forgets them (already counted and logged) without waiting.
        self._failed_since_drain = 0
        try:
            self.producer.flush(0.0)
        except DeliveryError as exc:
            logger.debug("progress deliveries: %s", exc)

    def close(self) -> None:
        """Deliver what is pending within two seconds; log, never raise, the rest."""
        self.producer.close(timeout=2.0)


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
        group_max: int = 0,
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
            group_max: Cross-job batching: up to this many compatible items of a
                batch (equal batch keys of a group solver) are solved together and
                share their backend calls, as one of the ``concurrency`` solves;
                0 or 1 turns it off.
        """
        self.service = service
        self.consumer = consumer
        self.producer = producer
        self.outcomes_topic = outcomes_topic
        self.solvers = solvers
        self.worker = worker or WorkerSettings()
        self.announcer = StartAnnouncer(self.worker.started_delay_s)
        self.prewarm = tuple(prewarm)
        self.clock = clock
        self.handled = 0
        self.concurrency = max(1, concurrency)
        self.group_max = max(1, group_max)
        self._pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{service}-solve")
            if self.concurrency > 1
            else None
        )
        self._running = False
        self._warm = not self.prewarm

    def handle(self, record: Record) -> None:
        """Run one work item; emit ``started`` (see :class:`StartAnnouncer`) and its result."""
        item = record.value
        with log_context(
            job_id=item["job_id"], correlation_id=item["correlation_id"], work_id=item["work_id"]
        ):
            execute(
                item,
                self.solvers.for_item,
                self.clock(),
                emit=self._emitter(record),
                settings=self.worker,
            )
        self.handled += 1

    def handle_group(self, records: Sequence[Record]) -> None:
        """Run compatible work items together (cross-job batching); one outcome each."""
        execute_group(
            [r.value for r in records],
            self.solvers.for_item,
            self.clock(),
            emits=[self._emitter(r) for r in records],
            settings=self.worker,
            stopping=lambda: self.consumer.stopping,
        )
        self.handled += len(records)

    def _emitter(self, record: Record) -> Callable[[dict[str, Any]], None]:
        """Produce the outcomes of ``record``'s item (keyed by job id), with metrics."""
        item = record.value
        job_id = item["job_id"]
        backend = str(item.get("backend") or "")
        headers = h.propagate(
            record.headers, **{h.CORRELATION_ID: item["correlation_id"], h.JOB_ID: job_id}
        )

        started: PendingStart | None = None

        def emit(outcome: dict[str, Any]) -> None:
            nonlocal started
            topic = self.outcomes_topic
            if outcome["status"] == "started":

                def announce() -> None:
                    self.producer.send(topic, outcome, key=job_id, headers=headers)
                    observe(outcome, self.service, backend)

                started = self.announcer.hold(announce)
                return
            if started is not None:
                started.settle()  # the result follows its start, or goes alone
            try:
                self.producer.send(topic, outcome, key=job_id, headers=headers)
            except CodecError as exc:
                # A solver result that does not fit the schema is a defect to report,
                # not a reason to leave the orchestrator waiting for its timeout.
                logger.error("outcome of %s is not encodable: %s", item["work_id"], exc)
                defect = SolverError(f"outcome not encodable: {exc}")
                outcome = error_record(item, defect, self.clock())
                self.producer.send(self.outcomes_topic, outcome, key=job_id, headers=headers)
            observe(outcome, self.service, backend)

        return emit

    def handle_batch(self, records: Sequence[Record]) -> None:
        """Run a batch of work items, ``concurrency`` at a time (the consumer's batch handler).

        With cross-job batching (``group_max``), compatible items form one unit of
        work that takes one of the ``concurrency`` slots (see :meth:`handle_group`).

        Returns once every item's outcome is produced; the consumer then flushes once
        and stores the batch's offsets (in order per partition), so an instance killed
        mid-batch re-runs the batch's items: at-least-once, as for single items.

        Raises:
            Exception: The first item failure (an outcome that could not be produced);
                the consumer then handles the batch item by item.
            StoppingError: Shutting down: items not yet started were skipped; the
                consumer hands the batch back.
        """
        units = self._units(records)
        if self._pool is None or len(units) == 1:
            for unit in units:
                self._handle_unit(unit)
            return
        futures = [self._pool.submit(self._handle_unless_stopping, u) for u in units]
        errors = [f.exception() for f in futures]  # waits for every item
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def _units(self, records: Sequence[Record]) -> list[list[Record]]:
        """The batch as units of work: single items, or groups of compatible items."""
        if self.group_max < 2 or len(records) < 2:
            return [[r] for r in records]
        groups = batch_groups(
            [r.value for r in records],
            self.solvers.for_item,
            self.clock(),
            settings=self.worker,
            max_size=self.group_max,
        )
        return [[records[i] for i in group] for group in groups]

    def _handle_unit(self, unit: Sequence[Record]) -> None:
        if len(unit) == 1:
            self.handle(unit[0])
        else:
            self.handle_group(unit)

    def _handle_unless_stopping(self, unit: Sequence[Record]) -> None:
        # On SIGTERM only the solves already running finish: a batch's queued items are
        # handed back (offsets not stored, redelivered), so shutdown does not wait for them.
        if self.consumer.stopping:
            raise StoppingError("shutting down: not started")
        self._handle_unit(unit)

    def run(self) -> None:
        """Prewarm, then consume until :meth:`stop` (the work items in hand are finished)."""
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
        self.announcer.close()
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
    progress: ProgressPublisher | None = None,
    group_max: int = 0,
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
        progress: The progress publisher the solvers report to (its topic is created
            with the others; closed at exit).
        group_max: Cross-job batching: compatible items solved together at most
            (0: off); see :class:`ExecutorApp`.

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
        extra = [progress.topic] if progress is not None else []
        ensure_topics(kafka, [work, outcomes, dlq_topic, *extra])
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
        group_max=group_max,
    )

    def on_exit() -> None:
        app.close()
        if progress is not None:
            progress.close()

    return runtime.serve(app.run, stop=app.stop, ready=app.ready, on_exit=on_exit)
