"""Byte budgets on the bus: typed produce errors, DLQ copies that always fit, the request budget.

No broker is needed: librdkafka checks sizes and its local queue at ``produce()`` time, and
the DLQ publisher is exercised with a producer double that records what it was given.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from devstack.kafka import DEFAULT_BROKER_CONFIG
from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, KafkaSettings
from qbridge.bus import headers as h
from qbridge.bus.dlq import DLQ_TRUNCATED
from qbridge.contracts import AvroCodec
from qbridge.errors import (
    CodecError,
    ErrorClass,
    MessageTooLargeError,
    ProducerQueueFullError,
    classify,
)
from qbridge.service.settings import ProblemLimitsSettings
from qbridge.topics import (
    MAX_REQUEST_BYTES,
    MESSAGE_MAX_BYTES,
    TOPIC_MAX_MESSAGE_BYTES,
)


def _dead_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


def _producer(codec: AvroCodec, **overrides: Any) -> BusProducer:
    return BusProducer(
        KafkaSettings(bootstrap_servers=_dead_port()), codec, "test", overrides=overrides
    )


def test_limits_are_consistent() -> None:
    assert MAX_REQUEST_BYTES < MESSAGE_MAX_BYTES < TOPIC_MAX_MESSAGE_BYTES
    assert int(DEFAULT_BROKER_CONFIG["message.max.bytes"]) == TOPIC_MAX_MESSAGE_BYTES
    assert ProblemLimitsSettings().max_request_bytes == MAX_REQUEST_BYTES


def test_send_raw_raises_typed_error_for_an_oversized_message(codec: AvroCodec) -> None:
    producer = _producer(codec)
    assert producer.max_message_bytes == MESSAGE_MAX_BYTES
    with pytest.raises(MessageTooLargeError, match="too large") as info:
        producer.send_raw("t", b"x" * (MESSAGE_MAX_BYTES + 1))
    assert classify(info.value) is ErrorClass.INVALID_INPUT


def test_send_raw_gives_up_on_a_full_queue_after_its_deadline(codec: AvroCodec) -> None:
    producer = _producer(codec, **{"queue.buffering.max.messages": 1})
    producer.send_raw("t", b"first")  # nobody is listening: it stays queued
    with pytest.raises(ProducerQueueFullError, match="still full") as info:
        producer.send_raw("t", b"second", deadline_s=0.3)
    assert classify(info.value) is ErrorClass.TRANSIENT


def test_codec_rejects_a_message_over_its_byte_budget_before_parsing(codec: AvroCodec) -> None:
    bounded = AvroCodec(codec.registry, max_decode_bytes=100)
    # Not even framed: the size check comes first, so the error says "too large".
    with pytest.raises(MessageTooLargeError, match="message of 101 bytes is too large"):
        bounded.decode(b"\x07" * 101)
    assert issubclass(MessageTooLargeError, CodecError)


class _RecordingProducer:
    """Stands in for BusProducer: real codec and limit, records what is sent."""

    def __init__(self, codec: AvroCodec, limit: int, fail: Exception | None = None) -> None:
        self.codec = codec
        self.max_message_bytes = limit
        self.fail = fail
        self.sent: list[tuple[str, bytes, Any, list[tuple[str, bytes]]]] = []

    def send_raw(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> None:
        if self.fail is not None:
            raise self.fail
        size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
        if size > self.max_message_bytes:
            raise MessageTooLargeError(f"{size} bytes")
        self.sent.append((topic, value, key, headers))

    def flush(self, timeout: float = 30.0) -> None:
        return None


def _msg(value: bytes, key: bytes = b"k", headers: Any = None) -> Message:
    return Message(topic="src", partition=2, offset=41, key=key, value=value, headers=headers or [])


def test_dlq_copy_of_a_small_message_keeps_everything(codec: AvroCodec) -> None:
    fake = _RecordingProducer(codec, MESSAGE_MAX_BYTES)
    dlq = DeadLetterPublisher(fake, "intake")  # type: ignore[arg-type]
    assert dlq.publish(_msg(b"abc", headers=[(h.CORRELATION_ID, b"c-1")]), ValueError("bad"))
    _, value, key, headers = fake.sent[0]
    record = codec.decode(value).value
    assert record["original_value"] == b"abc" and key == b"k"
    assert record["original_headers"] == {h.CORRELATION_ID: b"c-1"}
    assert DLQ_TRUNCATED not in dict(headers)


def test_dlq_copy_of_an_oversized_message_is_truncated_to_fit(codec: AvroCodec) -> None:
    fake = _RecordingProducer(codec, MESSAGE_MAX_BYTES)
    dlq = DeadLetterPublisher(fake, "intake")  # type: ignore[arg-type]
    original = bytes(range(256)) * 5000  # 1.28 MB, more than the producer takes
    error = MessageTooLargeError("message of 1280000 bytes is too large")
    assert dlq.publish(_msg(original), error)
    _, value, _key, headers = fake.sent[0]
    assert len(value) <= MESSAGE_MAX_BYTES
    record = codec.decode(value).value
    kept = record["original_value"]
    assert 0.9 * MESSAGE_MAX_BYTES < len(kept) < len(original)
    assert original.startswith(kept)
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (
        "src",
        2,
        41,
    )
    assert record["reason"].startswith("message of 1280000 bytes is too large")
    assert f"truncated from {len(original)} to {len(kept)} bytes" in record["reason"]
    assert dict(headers)[DLQ_TRUNCATED] == str(len(original)).encode()
    assert record["error_class"] == "invalid_input"


def test_dlq_copy_fits_even_with_hostile_key_and_headers(codec: AvroCodec) -> None:
    fake = _RecordingProducer(codec, 200_000)
    dlq = DeadLetterPublisher(fake, "intake")  # type: ignore[arg-type]
    msg = _msg(b"v" * 50_000, key=b"K" * 150_000, headers=[("x", b"h" * 150_000)])
    assert dlq.publish(msg, ValueError("bad"))
    _, value, key, _ = fake.sent[0]
    record = codec.decode(value).value
    assert len(key) == 1024 and record["original_headers"] == {}
    assert b"v" * 1000 in record["original_value"]


def test_dlq_publish_never_raises(codec: AvroCodec) -> None:
    fake = _RecordingProducer(codec, MESSAGE_MAX_BYTES, fail=ProducerQueueFullError("full"))
    dlq = DeadLetterPublisher(fake, "intake")  # type: ignore[arg-type]
    assert dlq.publish(_msg(b"abc"), ValueError("bad")) is False
    assert dlq.published == 0


class _RevokedConsumer:
    """A librdkafka consumer whose partition was revoked: storing an offset fails."""

    def store_offsets(self, **kwargs: Any) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, "StoreOffsets failed"))


def test_storing_an_offset_of_a_revoked_partition_does_not_crash(codec: AvroCodec) -> None:
    # Seen in `make chaos`: after a broker restart, every consumer died in store_offsets.
    consumer = BusConsumer.__new__(BusConsumer)
    consumer._consumer = _RevokedConsumer()  # type: ignore[assignment]
    consumer.producer = None
    consumer.dlq = SimpleNamespace(producer=None, service="test")  # type: ignore[assignment]
    consumer._dead_lettered_unflushed = False
    consumer.processed = 0
    # logged, not raised: the partition's new owner re-reads the batch
    consumer._checkpoint([(_msg(b"v"), True)])
    consumer._consumer.store_offsets = _raise_other  # type: ignore[method-assign]
    with pytest.raises(KafkaException):
        consumer._checkpoint([(_msg(b"v"), True)])


def _raise_other(**kwargs: Any) -> None:
    raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "other"))
