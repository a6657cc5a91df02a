"""An idempotent Kafka producer that encodes Avro and reports delivery failures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from qbridge.bus.settings import KafkaSettings
from qbridge.contracts.codec import AvroCodec
from qbridge.errors import (
    BusError,
    DeliveryError,
    MessageTooLargeError,
    ProducerQueueFullError,
)
from qbridge.topics import MESSAGE_MAX_BYTES, TopicSpec

logger = logging.getLogger(__name__)

# Safe defaults: no duplicates from retries (idempotence), no loss on leader change (acks=all).
# Batching (linger, batch size, compression) comes from KafkaSettings.producer_config().
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "delivery.timeout.ms": 120_000,
    "message.max.bytes": MESSAGE_MAX_BYTES,
}

SEND_DEADLINE_S = 30.0
"""How long :meth:`BusProducer.send_raw` waits for room in a full local queue."""


class BusProducer:
    """Produces Avro records (or raw bytes) with delivery tracking.

    Delivery is asynchronous; :meth:`flush` waits for every pending message and
    raises :class:`DeliveryError` if any failed since the previous flush. Callers
    that must not lose a message (e.g. before storing a consumer offset) flush.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: AvroCodec,
        client_id: str,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the producer.

        Args:
            settings: Connection settings.
            codec: Avro codec for :meth:`send`.
            client_id: Shows up in broker logs and metrics.
            overrides: Extra librdkafka settings (win over the defaults).
        """
        config = {
            **settings.client_config(),
            **settings.producer_config(),
            **_PRODUCER_DEFAULTS,
            "client.id": client_id,
        }
        config.update(overrides or {})
        self._producer = Producer(config)
        self.max_message_bytes = int(config["message.max.bytes"])
        self.codec = codec
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self.delivered = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            reason = f"{msg.topic()}: {err.str()}"
            logger.error("delivery failed: %s", reason)
            with self._lock:
                self._failures.append(reason)
        else:
            with self._lock:
                self.delivered += 1

    def send(
        self,
        topic: TopicSpec,
        value: Mapping[str, Any],
        key: str | bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Encode ``value`` with the topic's schema and produce it.

        ``on_delivery`` is also told this message's own delivery result (a caller
        waiting for one message must not read another's failure).

        Raises:
            CodecError: ``value`` does not match the schema.
        """
        self.send_raw(
            topic.name,
            self.codec.encode(topic.record, value),
            key,
            headers,
            on_delivery=on_delivery,
        )

    def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        deadline_s: float = SEND_DEADLINE_S,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Produce already-encoded bytes (used for DLQ copies and tests).

        Args:
            topic: Topic name.
            value: Message value.
            key: Message key.
            headers: Kafka headers.
            deadline_s: How long to wait for room while the local queue is full.
            on_delivery: Also called with this message's delivery report (per-call results).

        Raises:
            MessageTooLargeError: The message exceeds ``message.max.bytes`` (never retry it).
            ProducerQueueFullError: The queue stayed full for ``deadline_s`` (transient).
            BusError: Any other produce error (transient unless the client is broken).
        """
        deadline = time.monotonic() + deadline_s
        report = self._on_delivery
        if on_delivery is not None:

            def report(err: KafkaError | None, msg: Message) -> None:
                self._on_delivery(err, msg)
                on_delivery(err, msg)

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers or []),
                    on_delivery=report,
                )
                break
            except BufferError as exc:
                # Local queue full: serve delivery reports to make room, then retry.
                if time.monotonic() >= deadline:
                    raise ProducerQueueFullError(
                        f"producer queue for {topic} still full after {deadline_s:.1f}s"
                    ) from exc
                self._producer.poll(0.1)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                code = err.code() if isinstance(err, KafkaError) else None
                if code == KafkaError.MSG_SIZE_TOO_LARGE:
                    size = len(value or b"") + len(key or b"")
                    raise MessageTooLargeError(
                        f"message of {size} bytes to {topic} is too large: the producer "
                        f"limit (message.max.bytes) is {self.max_message_bytes} bytes"
                    ) from exc
                raise BusError(f"producing to {topic} failed: {exc}") from exc
        self._producer.poll(0)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports for at most ``timeout`` seconds."""
        self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for all pending deliveries.

        Raises:
            DeliveryError: A message failed, or some are still pending after ``timeout``.
        """
        remaining = self._producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(f"{len(failures)} message(s) not delivered: {failures[0]}")
        if remaining:
            raise DeliveryError(f"{remaining} message(s) still pending after {timeout:.1f}s")

    def close(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed; log (not raise) what could not."""
        try:
            self.flush(timeout)
        except DeliveryError as exc:
            logger.error("closing producer with undelivered messages: %s", exc)
