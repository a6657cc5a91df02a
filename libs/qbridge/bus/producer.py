"""An idempotent Kafka producer that encodes Avro and reports delivery failures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from qbridge.bus.settings import KafkaSettings
from qbridge.contracts.codec import AvroCodec
from qbridge.errors import DeliveryError
from qbridge.topics import TopicSpec

logger = logging.getLogger(__name__)

# Safe defaults: no duplicates from retries (idempotence), no loss on leader change (acks=all).
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
    "delivery.timeout.ms": 120_000,
}


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
        config = {**settings.client_config(), **_PRODUCER_DEFAULTS, "client.id": client_id}
        config.update(overrides or {})
        self._producer = Producer(config)
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
        self.send_raw(topic.name, self.codec.encode(topic.record, value), key, headers, on_delivery)

    def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Produce already-encoded bytes (used for DLQ copies and tests)."""
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
            except BufferError:
                # Local queue full: serve delivery reports to make room, then retry.
                self._producer.poll(0.1)
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
