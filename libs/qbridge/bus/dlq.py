"""Dead-letter publishing: keep the original bytes, say why, never crash."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from confluent_kafka import Message

from qbridge.bus import headers as h
from qbridge.bus.producer import BusProducer
from qbridge.errors import ErrorClass, classify
from qbridge.metrics import DLQ_MESSAGES, MESSAGES_CONSUMED
from qbridge.topics import DEAD_LETTERS, TopicSpec

logger = logging.getLogger(__name__)


class DeadLetterPublisher:
    """Publishes failed messages to the DLQ topic.

    The DLQ value is a ``qbridge.DeadLetter`` Avro record holding the original
    key, value and headers plus the reason; the same metadata is also put in
    Kafka headers so tools can filter without decoding.
    """

    def __init__(
        self, producer: BusProducer, service: str, topic: TopicSpec = DEAD_LETTERS
    ) -> None:
        """Create a publisher.

        Args:
            producer: Producer used for DLQ records.
            service: Name of the service that gave up on the message.
            topic: The DLQ topic.
        """
        self.producer = producer
        self.service = service
        self.topic = topic
        self.published = 0

    def publish(
        self,
        msg: Message,
        error: BaseException,
        attempt: int = 1,
        error_class: ErrorClass | None = None,
    ) -> None:
        """Send ``msg`` to the DLQ with the reason from ``error``."""
        cls = error_class or classify(error)
        reason = str(error) or type(error).__name__
        original_headers = h.to_dict(msg.headers())
        record = {
            "source_topic": msg.topic() or "",
            "source_partition": msg.partition() or 0,
            "source_offset": msg.offset() or 0,
            "original_key": msg.key(),
            "original_value": msg.value(),
            "original_headers": original_headers,
            "error_class": cls.value,
            "error_type": type(error).__name__,
            "reason": reason,
            "service": self.service,
            "attempt": attempt,
            "failed_at": datetime.now(UTC),
        }
        meta: dict[str, str | bytes] = {
            h.DLQ_ERROR_CLASS: cls.value,
            h.DLQ_ERROR_TYPE: type(error).__name__,
            h.DLQ_REASON: reason[:1000],
            h.DLQ_SOURCE_TOPIC: msg.topic() or "",
            h.DLQ_SOURCE_PARTITION: str(record["source_partition"]),
            h.DLQ_SOURCE_OFFSET: str(record["source_offset"]),
            h.DLQ_ATTEMPT: str(attempt),
            h.DLQ_SERVICE: self.service,
        }
        for key in (h.CORRELATION_ID, h.TRACEPARENT):
            if key in original_headers:
                meta[key] = original_headers[key].decode(errors="replace")
        logger.warning(
            "dead-lettering %s[%s]@%s: %s (%s)",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            reason,
            cls.value,
        )
        self.producer.send(self.topic, record, key=msg.key(), headers=h.to_list(meta))
        self.published += 1
        DLQ_MESSAGES.labels(self.service, cls.value).inc()
        MESSAGES_CONSUMED.labels(self.service, msg.topic() or "", "dlq").inc()
