"""Batch checkpointing against a real broker: one flush per batch, per-record semantics kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from qbridge.bus import (
    BusConsumer,
    BusProducer,
    DeadLetterPublisher,
    KafkaSettings,
    Record,
    ensure_topics,
)
from qbridge.contracts import AvroCodec
from qbridge.errors import InvalidProblemError, StoppingError, TransientSolverError
from qbridge.topics import TopicSpec
from tests.integration.test_bus import _status

pytestmark = pytest.mark.integration


class CountingProducer(BusProducer):
    """A producer that counts its flushes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flushes = 0

    def flush(self, timeout: float = 30.0) -> None:
        self.flushes += 1
        super().flush(timeout)


def _topics(unique: str) -> tuple[TopicSpec, TopicSpec, TopicSpec]:
    data = TopicSpec(f"test.batch.{unique}", "qbridge.JobStatusTransition", partitions=2)
    out = TopicSpec(f"test.batch-out.{unique}", "qbridge.JobStatusTransition", partitions=1)
    dlq = TopicSpec(f"test.batch-dlq.{unique}", "qbridge.DeadLetter", partitions=1)
    return data, out, dlq


def _publish(
    settings: KafkaSettings, codec: AvroCodec, topic: TopicSpec, seqs: Sequence[int]
) -> None:
    p = BusProducer(settings, codec, client_id="batch-src")
    for i in seqs:
        p.send(topic, _status(i), key=f"job-{i}")
    p.flush()


def _setup(
    settings: KafkaSettings, codec: AvroCodec, unique: str, **kwargs: Any
) -> tuple[BusConsumer, CountingProducer, TopicSpec, TopicSpec, TopicSpec]:
    data, out, dlq_topic = _topics(unique)
    ensure_topics(settings, [data, out, dlq_topic])
    producer = CountingProducer(settings, codec, client_id=f"out-{unique}")
    dlq = DeadLetterPublisher(producer, service="test", topic=dlq_topic)
    consumer = BusConsumer(settings, f"g-{unique}", [data], codec, dlq, producer=producer, **kwargs)
    return consumer, producer, data, out, dlq_topic


def _committed(settings: KafkaSettings, group: str, topic: str, partitions: int) -> int:
    c = Consumer({**settings.client_config(), "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c.close()
    return sum(max(tp.offset, 0) for tp in got)


def _run_until(consumer: BusConsumer, done: Any, **kwargs: Any) -> None:
    for _ in range(200):
        if done():
            return
        consumer.process_batch(timeout=0.5, **kwargs)
    raise AssertionError("messages not processed")


def test_a_batch_is_handled_with_one_flush_and_every_offset_stored(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    settings = kafka_settings.model_copy(update={"batch_max_messages": 100})
    consumer, producer, data, out, _ = _setup(settings, codec, unique)
    _publish(settings, codec, data, range(60))
    batches: list[list[int]] = []

    def batch(records: Sequence[Record]) -> None:
        batches.append([r.value["seq"] for r in records])
        for r in records:
            producer.send(out, r.value, key=r.key)

    def one(record: Record) -> None:
        raise AssertionError("the batch handler succeeded: no per-record call expected")

    _run_until(consumer, lambda: sum(map(len, batches)) == 60, handler=one, batch_handler=batch)
    consumer.commit()
    consumer.close()
    assert sorted(s for b in batches for s in b) == list(range(60))
    assert max(map(len, batches)) > 1, "records were batched"
    assert producer.flushes == len(batches), "one flush per batch"
    assert consumer.processed == 60
    assert _committed(settings, f"g-{unique}", data.name, 2) == 60


def test_a_failing_batch_is_handled_record_by_record_with_dlq_and_retries(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    consumer, _, data, _, _ = _setup(kafka_settings, codec, unique, retry_backoff_s=0.01)
    src = BusProducer(kafka_settings, codec, client_id="batch-src")
    for i in range(6):
        src.send(data, _status(i), key="same-partition")
        if i == 2:
            src.send_raw(data.name, b"\x07not avro", key=b"same-partition")
    src.flush()
    calls: dict[int, int] = {}
    handled: list[int] = []

    def batch(records: Sequence[Record]) -> None:
        raise TransientSolverError("the whole-batch write failed")

    def one(record: Record) -> None:
        seq = record.value["seq"]
        calls[seq] = calls.get(seq, 0) + 1
        if seq == 4:
            raise InvalidProblemError("poison")
        if seq == 1 and calls[seq] < 3:
            raise TransientSolverError("flaky")
        handled.append(seq)

    _run_until(
        consumer,
        lambda: consumer.processed + consumer.dead_lettered == 7,
        handler=one,
        batch_handler=batch,
    )
    consumer.commit()
    consumer.close()
    assert handled == [0, 1, 2, 3, 5], "order kept, poison skipped"
    assert calls[1] == 3, "transient errors retried in place"
    assert consumer.dead_lettered == 2, "the undecodable message and the poison one"
    assert consumer.processed == 5
    assert _committed(kafka_settings, f"g-{unique}", data.name, 2) == 7


def test_stopping_during_a_retry_hands_back_the_rest_of_the_batch(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    consumer, _, data, _, _ = _setup(kafka_settings, codec, unique, retry_backoff_s=0.01)
    src = BusProducer(kafka_settings, codec, client_id="batch-src")
    for i in range(4):
        src.send(data, _status(i), key="same-partition")
    src.flush()
    handled: list[int] = []

    def one(record: Record) -> None:
        if record.value["seq"] == 2:
            consumer.stop()
            raise TransientSolverError("backend down while stopping")
        handled.append(record.value["seq"])

    _run_until(consumer, lambda: consumer.stopping and len(handled) >= 2, handler=one)
    consumer.commit()
    consumer.close()
    assert handled == [0, 1]
    assert _committed(kafka_settings, f"g-{unique}", data.name, 2) == 2

    again, _, _, _, _ = _setup(kafka_settings, codec, unique)
    rest: list[int] = []
    _run_until(again, lambda: len(rest) == 2, handler=lambda r: rest.append(r.value["seq"]))
    again.close()
    assert rest == [2, 3], "the handed-back records are re-delivered, nothing skipped"


def test_a_batch_stopped_by_shutdown_is_handed_back_not_run_record_by_record(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    settings = kafka_settings.model_copy(update={"batch_max_messages": 100})
    consumer, _, data, _, _ = _setup(settings, codec, unique)
    _publish(settings, codec, data, range(20))
    seen: list[int] = []

    def batch(records: Sequence[Record]) -> None:
        seen.extend(r.value["seq"] for r in records)
        consumer.stop()  # SIGTERM while the batch runs: its queued items are not started
        raise StoppingError("shutting down: not started")

    def one(record: Record) -> None:
        raise AssertionError("a stopping consumer must not run the batch record by record")

    _run_until(consumer, lambda: bool(seen), handler=one, batch_handler=batch)
    consumer.close()
    assert _committed(settings, f"g-{unique}", data.name, 2) == 0
    # the next instance of the group gets every record again (at-least-once)
    again, _, _, _, _ = _setup(settings, codec, unique)
    got: list[int] = []
    _run_until(again, lambda: len(set(got)) == 20, handler=lambda r: got.append(r.value["seq"]))
    again.commit()
    again.close()
    assert sorted(set(got)) == list(range(20))
