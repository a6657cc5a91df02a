"""An at-least-once Avro consumer: offsets are stored only after the handler succeeded.

The flow for each message:

1. decode it (Confluent-framed Avro, resolved to the topic's latest schema);
   undecodable bytes go to the DLQ with the reason and are skipped;
2. call the handler; flush the producer it wrote through (the side effect is durable);
3. only then store the offset (auto-commit commits stored offsets periodically
   and on close).

Handler errors are classified (:func:`qbridge.errors.classify`): invalid input and
defects go to the DLQ at once; transient errors are retried in place with
exponential backoff (the assignment is paused meanwhile so the group does not
evict us), and after ``max_attempts`` either go to the DLQ or keep blocking,
depending on ``on_exhausted``. A consumer that dies before step 3 re-receives
the message after restart, so handlers must be idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from qbridge.bus import headers as h
from qbridge.bus.dlq import DeadLetterPublisher
from qbridge.bus.producer import BusProducer
from qbridge.bus.settings import KafkaSettings
from qbridge.contracts.codec import AvroCodec
from qbridge.errors import BusError, CodecError, ErrorClass, classify
from qbridge.metrics import MESSAGES_CONSUMED, RETRIES
from qbridge.topics import TopicSpec

logger = logging.getLogger(__name__)

_CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": True,
    "auto.commit.interval.ms": 1000,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "max.poll.interval.ms": 300_000,
}


@dataclass(frozen=True)
class Record:
    """A decoded message handed to a handler.

    Attributes:
        topic: Source topic.
        partition: Source partition.
        offset: Source offset.
        key: Message key bytes.
        value: The Avro record, resolved to the latest schema version.
        subject: Writer's record name.
        headers: Kafka headers as a dict.
        timestamp_ms: Broker/producer timestamp.
        schema_id: Id of the writer's schema (its version tells which contract the
            producer used).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]
    subject: str
    headers: Mapping[str, bytes]
    timestamp_ms: int
    schema_id: int = 0

    @property
    def correlation_id(self) -> str | None:
        """The correlation id header, if any."""
        raw = self.headers.get(h.CORRELATION_ID)
        return raw.decode(errors="replace") if raw else None


Handler = Callable[[Record], None]


class BusConsumer:
    """Consumes Avro records from one or more topics as a member of a consumer group."""

    def __init__(
        self,
        settings: KafkaSettings,
        group: str,
        topics: Sequence[TopicSpec],
        codec: AvroCodec,
        dlq: DeadLetterPublisher,
        *,
        producer: BusProducer | None = None,
        max_attempts: int = 5,
        retry_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        on_exhausted: Literal["dlq", "block"] = "dlq",
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """Create and subscribe the consumer.

        Args:
            settings: Connection settings.
            group: Consumer group id.
            topics: Topics to subscribe to.
            codec: Decoder for message values.
            dlq: Where undecodable and failed messages go.
            producer: The producer the handler writes through; flushed before an offset
                is stored so outputs are durable first. The DLQ's producer is always flushed.
            max_attempts: Tries for transient errors before ``on_exhausted`` applies.
            retry_backoff_s: First backoff; doubles up to ``max_backoff_s``.
            max_backoff_s: Cap of the backoff.
            on_exhausted: ``dlq`` (give up on the message) or ``block`` (keep retrying,
                e.g. while a database is down: nothing is skipped).
            overrides: Extra librdkafka settings.
        """
        config = {
            **settings.client_config(),
            **_CONSUMER_DEFAULTS,
            "group.id": group,
            "session.timeout.ms": settings.session_timeout_ms,
        }
        if settings.group_instance_id:
            config["group.instance.id"] = settings.group_instance_id
        config.update(overrides or {})
        self.group = group
        self.codec = codec
        self.dlq = dlq
        self.producer = producer
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.max_backoff_s = max_backoff_s
        self.on_exhausted = on_exhausted
        self._subjects = {t.name: t.record for t in topics}
        self._consumer = Consumer(config)
        self._consumer.subscribe(list(self._subjects))
        self._stop = threading.Event()
        self._paused = False
        self.processed = 0
        self.dead_lettered = 0

    # --- flow control -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the message in hand (thread-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def pause(self) -> None:
        """Stop fetching from every assigned partition (e.g. under backpressure)."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        self._paused = True

    def resume(self) -> None:
        """Resume fetching after :meth:`pause`."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.resume(assignment)
        self._paused = False

    @property
    def paused(self) -> bool:
        """Whether the consumer is paused."""
        return self._paused

    # --- processing ---------------------------------------------------------------------

    def run(self, handler: Handler, on_idle: Callable[[], None] | None = None) -> None:
        """Process messages until :meth:`stop` is called.

        Args:
            handler: Called once per decoded record (at least once per message).
            on_idle: Called after each poll (with or without a message): timers, metrics.
        """
        while not self._stop.is_set():
            self.process_one(handler, timeout=0.5)
            if on_idle is not None:
                on_idle()

    def process_one(self, handler: Handler, timeout: float = 1.0) -> bool:
        """Poll once and process the message if one arrived.

        Returns:
            True if a message was taken (handled, dead-lettered, or handed back).
        """
        msg = self._consumer.poll(timeout)
        if msg is None:
            return False
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return False
            if err.fatal():
                raise BusError(f"fatal consumer error: {err.str()}")
            logger.warning("consumer error (librdkafka retries): %s", err.str())
            return False
        self._process(msg, handler)
        return True

    def _process(self, msg: KafkaMessage, handler: Handler) -> None:
        topic = msg.topic() or ""
        try:
            decoded = self.codec.decode(msg.value(), expected_subject=self._subjects.get(topic))
        except CodecError as exc:
            self._dead_letter(msg, exc, attempt=1)
            return
        record = Record(
            topic=topic,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=msg.key(),
            value=decoded.value,
            subject=decoded.subject,
            headers=h.to_dict(msg.headers()),
            timestamp_ms=msg.timestamp()[1],
            schema_id=decoded.schema_id,
        )
        attempt = 1
        backoff = self.retry_backoff_s
        while True:
            try:
                handler(record)
                if self.producer is not None:
                    self.producer.flush()
                self._store(msg)
                self.processed += 1
                MESSAGES_CONSUMED.labels(self.dlq.service, topic, "ok").inc()
                return
            except Exception as exc:
                cls = classify(exc)
                if cls in (ErrorClass.INVALID_INPUT, ErrorClass.DEFECT):
                    if cls is ErrorClass.DEFECT:
                        logger.exception("handler defect on %s@%s", topic, msg.offset())
                    self._dead_letter(msg, exc, attempt, cls)
                    return
                if attempt >= self.max_attempts and self.on_exhausted == "dlq":
                    self._dead_letter(msg, exc, attempt, cls)
                    return
                if self._stop.is_set():
                    # Hand the message back: its offset is not stored, so it is redelivered.
                    logger.warning("stopping with %s@%s unprocessed: %s", topic, msg.offset(), exc)
                    self._rewind(msg)
                    return
                logger.warning(
                    "attempt %d on %s@%s failed (%s): %s; retrying in %.1fs",
                    attempt,
                    topic,
                    msg.offset(),
                    cls.value,
                    exc,
                    backoff,
                )
                RETRIES.labels(self.dlq.service, cls.value).inc()
                self._wait_alive(backoff)
                attempt += 1
                backoff = min(backoff * 2, self.max_backoff_s)

    def _wait_alive(self, seconds: float) -> None:
        """Sleep while keeping group membership (paused poll) so long outages don't rebalance."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        deadline = time.monotonic() + seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                stray = self._consumer.poll(min(0.2, max(0.0, deadline - time.monotonic())))
                if stray is not None and stray.error() is None:
                    self._rewind(stray)
        finally:
            if assignment and not self._paused:
                self._consumer.resume(assignment)

    def _rewind(self, msg: KafkaMessage) -> None:
        try:
            self._consumer.seek(
                TopicPartition(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
            )
        except KafkaException as exc:  # partition revoked meanwhile: the new owner re-reads it
            logger.info("could not rewind %s@%s: %s", msg.topic(), msg.offset(), exc)

    def _dead_letter(
        self, msg: KafkaMessage, exc: BaseException, attempt: int, cls: ErrorClass | None = None
    ) -> None:
        if not self.dlq.publish(msg, exc, attempt=attempt, error_class=cls):
            # No durable DLQ copy (broker unreachable?): keep the message, try again later.
            self._rewind(msg)
            self._wait_alive(self.max_backoff_s)
            return
        self._store(msg)
        self.dead_lettered += 1

    def _store(self, msg: KafkaMessage) -> None:
        try:
            self._consumer.store_offsets(message=msg)
        except KafkaException as exc:
            # The partition was revoked meanwhile (e.g. a rebalance after a broker restart):
            # its new owner re-reads the message, and handlers are idempotent.
            if exc.args and exc.args[0].code() == KafkaError._STATE:
                logger.warning(
                    "offset of %s[%s]@%s not stored, partition no longer assigned: %s",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
                return
            raise

    # --- lifecycle ----------------------------------------------------------------------

    def commit(self) -> None:
        """Synchronously commit the stored offsets (auto-commit also does, periodically)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() != KafkaError._NO_OFFSET:
                raise

    def close(self) -> None:
        """Commit stored offsets and leave the group."""
        self._consumer.close()


def committed_offset(offset: int) -> int | None:
    """Map librdkafka's 'no committed offset' sentinel to ``None``."""
    return None if offset in (OFFSET_INVALID, -1) else offset
