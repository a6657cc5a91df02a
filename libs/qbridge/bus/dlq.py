"""Dead-letter publishing: keep the original bytes, say why, never crash.

A dead-letter copy always fits the producer's ``message.max.bytes``: when the original
message is too large (often the very reason it is dead-lettered), its value is cut to fit
and the record says so (the ``qbridge-dlq-truncated`` header holds the original size and
the reason mentions it); the source topic/partition/offset stay the pointer to the full
bytes, which the source topic keeps for its retention.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter

from qbridge.bus import headers as h
from qbridge.bus.producer import BusProducer
from qbridge.errors import ErrorClass, classify
from qbridge.metrics import DLQ_MESSAGES, MESSAGES_CONSUMED
from qbridge.topics import DEAD_LETTERS, TopicSpec

logger = logging.getLogger(__name__)

DLQ_TRUNCATED = "qbridge-dlq-truncated"
"""Header set when the original value was cut to fit: its original size in bytes."""

DLQ_PUBLISH_FAILURES = Counter(
    "qbridge_dlq_publish_failures_total",
    "Dead-letter copies that could not be made durable (the message is handed back).",
    ["service"],
)

_FRAMING_ROOM = 1024
"""Bytes kept free below ``message.max.bytes`` for Kafka's per-message framing."""
_MAX_KEY_BYTES = 1024
"""Longest original key kept when the record does not fit even without the value."""
_MAX_REASON_CHARS = 10_000
_FLUSH_TIMEOUT_S = 10.0


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
    ) -> bool:
        """Send ``msg`` to the DLQ with the reason from ``error`` and wait until it is durable.

        Never raises: a failure (broker unreachable, queue full...) is logged and
        counted, and the caller keeps the message (it must not store the offset, so the
        message is dead-lettered again later).

        Returns:
            True if the broker acknowledged the dead-letter copy.
        """
        try:
            self._publish(msg, error, attempt, error_class)
            self.producer.flush(_FLUSH_TIMEOUT_S)
        except Exception:
            logger.exception(
                "could not dead-letter %s[%s]@%s", msg.topic(), msg.partition(), msg.offset()
            )
            DLQ_PUBLISH_FAILURES.labels(self.service).inc()
            return False
        self.published += 1
        return True

    def _publish(
        self,
        msg: Message,
        error: BaseException,
        attempt: int,
        error_class: ErrorClass | None,
    ) -> None:
        cls = error_class or classify(error)
        reason = (str(error) or type(error).__name__)[:_MAX_REASON_CHARS]
        original_headers = h.to_dict(msg.headers())
        record: dict[str, Any] = {
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
                meta[key] = original_headers[key].decode(errors="replace")[:1000]
        logger.warning(
            "dead-lettering %s[%s]@%s: %s (%s)",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            reason[:1000],
            cls.value,
        )
        value, dlq_key = self._fit(record, meta)
        self.producer.send_raw(self.topic.name, value, key=dlq_key, headers=h.to_list(meta))
        DLQ_MESSAGES.labels(self.service, cls.value).inc()
        MESSAGES_CONSUMED.labels(self.service, msg.topic() or "", "dlq").inc()

    def _fit(
        self, record: dict[str, Any], meta: dict[str, str | bytes]
    ) -> tuple[bytes, bytes | None]:
        """Encode ``record``, cutting the original value (then key and headers) to fit."""
        subject = self.topic.record
        encode = self.producer.codec.encode
        budget = self.producer.max_message_bytes - _FRAMING_ROOM

        def size(value: bytes) -> int:
            headers = sum(len(k) + len(v) for k, v in h.to_list(meta))
            return len(value) + len(record["original_key"] or b"") + headers

        encoded = encode(subject, record)
        if size(encoded) <= budget:
            return encoded, record["original_key"]
        original: bytes = record["original_value"] or b""
        meta[DLQ_TRUNCATED] = str(len(original))
        record["original_value"] = b""
        if size(encode(subject, record)) > budget:
            # Too large even without the value: a hostile key or headers. Cut them as well.
            key = record["original_key"]
            record["original_key"] = key[:_MAX_KEY_BYTES] if key else key
            record["original_headers"] = {}
        note = f" [original value truncated from {len(original)} to %d bytes]"
        record["reason"] += note % len(original)  # longest form of the note: room is exact
        room = budget - size(encode(subject, record)) - 10  # the value's length varint
        kept = original[: max(0, room)]
        record["original_value"] = kept
        record["reason"] = record["reason"][: -len(note % len(original))] + note % len(kept)
        return encode(subject, record), record["original_key"]
