"""The event bus against a real Kafka broker: round trip, DLQ, at-least-once, lag."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer

from qbridge.bus import (
    BusConsumer,
    BusProducer,
    DeadLetterPublisher,
    KafkaSettings,
    LagReader,
    Record,
    ensure_topics,
)
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec
from qbridge.errors import InvalidProblemError, TransientSolverError
from qbridge.topics import TopicSpec

pytestmark = pytest.mark.integration


def _topics(unique: str, partitions: int = 1) -> tuple[TopicSpec, TopicSpec]:
    data = TopicSpec(f"test.status.{unique}", "qbridge.JobStatusTransition", partitions=partitions)
    dlq = TopicSpec(f"test.dlq.{unique}", "qbridge.DeadLetter", partitions=1)
    return data, dlq


def _status(i: int) -> dict[str, Any]:
    return {
        "job_id": f"job-{i}",
        "tenant": "acme",
        "seq": i,
        "from_status": None,
        "to_status": "accepted",
        "reason": f"message {i}",
        "reason_code": None,
        "attempt": None,
        "route": None,
        "backend": None,
        "correlation_id": f"corr-{i}",
        "at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def _consumer(
    settings: KafkaSettings,
    codec: AvroCodec,
    group: str,
    topic: TopicSpec,
    dlq_topic: TopicSpec,
    **kwargs: Any,
) -> tuple[BusConsumer, BusProducer]:
    producer = BusProducer(settings, codec, client_id=f"{group}-out")
    dlq = DeadLetterPublisher(producer, service="test", topic=dlq_topic)
    return BusConsumer(settings, group, [topic], codec, dlq, producer=producer, **kwargs), producer


def _drain(consumer: BusConsumer, handler: Any, until: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for messages"
        consumer.process_one(handler, timeout=0.5)


def _read_all(settings: KafkaSettings, topic: str, n: int, timeout: float = 30.0) -> list[Any]:
    c = Consumer(
        {
            **settings.client_config(),
            "group.id": f"reader-{topic}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def test_avro_round_trip_through_a_topic(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    topic, dlq_topic = _topics(unique)
    ensure_topics(kafka_settings, [topic, dlq_topic])
    producer = BusProducer(kafka_settings, codec, client_id="rt")
    sent = [_status(i) for i in range(5)]
    for s in sent:
        producer.send(topic, s, key=s["job_id"], headers=[(h.CORRELATION_ID, b"c-1")])
    producer.flush()

    consumer, _ = _consumer(kafka_settings, codec, f"g-{unique}", topic, dlq_topic)
    got: list[Record] = []
    _drain(consumer, got.append, lambda: len(got) == 5)
    consumer.close()
    assert [r.value for r in got] == sent
    assert all(r.subject == "qbridge.JobStatusTransition" for r in got)
    assert got[0].correlation_id == "c-1"
    assert got[0].key == b"job-0"


def test_malformed_message_goes_to_dlq_and_good_ones_flow(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    topic, dlq_topic = _topics(unique)
    ensure_topics(kafka_settings, [topic, dlq_topic])
    producer = BusProducer(kafka_settings, codec, client_id="dlq")
    garbage = b"\x07this is not avro"
    producer.send(topic, _status(1), key="job-1")
    producer.send_raw(topic.name, garbage, key=b"bad", headers=[(h.CORRELATION_ID, b"corr-bad")])
    producer.send(topic, _status(2), key="job-2")
    producer.send(topic, _status(3), key="job-3")
    producer.flush()

    consumer, _ = _consumer(kafka_settings, codec, f"g-{unique}", topic, dlq_topic)
    got: list[Record] = []
    _drain(consumer, got.append, lambda: len(got) == 3)
    assert [r.value["seq"] for r in got] == [1, 2, 3]
    assert consumer.dead_lettered == 1
    consumer.close()

    [dead] = _read_all(kafka_settings, dlq_topic.name, 1)
    record = codec.decode(dead.value(), expected_subject="qbridge.DeadLetter").value
    assert record["original_value"] == garbage
    assert record["original_key"] == b"bad"
    assert record["original_headers"][h.CORRELATION_ID] == b"corr-bad"
    assert record["source_topic"] == topic.name
    assert record["source_offset"] == 1
    assert record["error_type"] == "BadMagicByteError"
    assert "magic byte is 0x07" in record["reason"]
    assert record["error_class"] == "invalid_input"
    meta = h.to_dict(dead.headers())
    assert meta[h.DLQ_ERROR_CLASS] == b"invalid_input"
    assert meta[h.DLQ_SOURCE_TOPIC] == topic.name.encode()
    assert meta[h.DLQ_SOURCE_OFFSET] == b"1"
    assert meta[h.DLQ_ATTEMPT] == b"1"
    assert b"magic byte" in meta[h.DLQ_REASON]


def test_handler_errors_are_classified(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    """Transient errors are retried until they succeed; invalid input is dead-lettered at once."""
    topic, dlq_topic = _topics(unique)
    ensure_topics(kafka_settings, [topic, dlq_topic])
    producer = BusProducer(kafka_settings, codec, client_id="cls")
    for i in (1, 2):
        producer.send(topic, _status(i), key=f"job-{i}")
    producer.flush()

    calls: dict[int, int] = {}
    done: list[int] = []

    def handler(r: Record) -> None:
        seq = r.value["seq"]
        calls[seq] = calls.get(seq, 0) + 1
        if seq == 1 and calls[seq] < 3:
            raise TransientSolverError("flaky backend")
        if seq == 2:
            raise InvalidProblemError("bad weight", field="edges[0].weight")
        done.append(seq)

    consumer, _ = _consumer(
        kafka_settings, codec, f"g-{unique}", topic, dlq_topic, retry_backoff_s=0.05
    )
    _drain(consumer, handler, lambda: consumer.processed + consumer.dead_lettered == 2)
    consumer.close()
    assert calls == {1: 3, 2: 1}
    assert done == [1]
    [dead] = _read_all(kafka_settings, dlq_topic.name, 1)
    record = codec.decode(dead.value()).value
    assert record["error_type"] == "InvalidProblemError"
    assert record["reason"] == "edges[0].weight: bad weight"


_KILLED_CONSUMER = textwrap.dedent(
    """
    import sys, time
    from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, KafkaSettings
    from qbridge.contracts import AvroCodec, default_registry
    from qbridge.topics import TopicSpec

    bootstrap, topic, dlq_topic, group = sys.argv[1:5]
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    codec = AvroCodec(default_registry())
    producer = BusProducer(settings, codec, client_id="victim")
    consumer = BusConsumer(
        settings, group, [TopicSpec(topic, "qbridge.JobStatusTransition", partitions=1)], codec,
        DeadLetterPublisher(producer, "victim", TopicSpec(dlq_topic, "qbridge.DeadLetter")),
        overrides={"auto.commit.interval.ms": 100},
    )

    def handler(record):
        print(f"got {record.offset}", flush=True)
        time.sleep(3600)  # killed here: mid-handler, offset never stored

    while True:
        consumer.process_one(handler, timeout=0.5)
    """
)


def test_consumer_killed_before_storing_offset_re_receives(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    topic, dlq_topic = _topics(unique)
    ensure_topics(kafka_settings, [topic, dlq_topic])
    producer = BusProducer(kafka_settings, codec, client_id="alo")
    producer.send(topic, _status(42), key="job-42")
    producer.flush()
    group = f"g-{unique}"

    victim = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_CONSUMER,
            kafka_settings.bootstrap_servers,
            topic.name,
            dlq_topic.name,
            group,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline()
        assert line.strip() == "got 0"
        time.sleep(0.5)  # several auto-commit intervals: nothing stored, so nothing committed
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()

    consumer, _ = _consumer(kafka_settings, codec, group, topic, dlq_topic)
    got: list[Record] = []
    _drain(consumer, got.append, lambda: len(got) == 1, timeout=90)
    consumer.close()
    assert got[0].offset == 0
    assert got[0].value["seq"] == 42


def test_lag_reader_reports_n_minus_m(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    n, m = 20, 7
    topic, dlq_topic = _topics(unique, partitions=3)
    ensure_topics(kafka_settings, [topic, dlq_topic])
    producer = BusProducer(kafka_settings, codec, client_id="lag")
    for i in range(n):
        producer.send(topic, _status(i), key=f"job-{i}")
    producer.flush()
    group = f"g-{unique}"

    reader = LagReader(kafka_settings, group)
    assert reader.total([topic.name]) == n  # nothing committed yet: everything is lag

    consumer, _ = _consumer(kafka_settings, codec, group, topic, dlq_topic)
    got: list[Record] = []
    _drain(consumer, got.append, lambda: len(got) == m)
    consumer.commit()
    consumer.close()

    per_partition = reader.read([topic.name])
    reader.close()
    assert len(per_partition) == 3
    assert sum(p.high for p in per_partition) == n
    assert sum(p.lag for p in per_partition) == n - m


def test_pause_stops_delivery_until_resume(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    topic, dlq_topic = _topics(unique)
    ensure_topics(kafka_settings, [topic, dlq_topic])
    producer = BusProducer(kafka_settings, codec, client_id="pause")
    producer.send(topic, _status(1), key="job-1")
    producer.flush()
    consumer, _ = _consumer(kafka_settings, codec, f"g-{unique}", topic, dlq_topic)
    got: list[Record] = []
    _drain(consumer, got.append, lambda: len(got) == 1)

    consumer.pause()
    producer.send(topic, _status(2), key="job-2")
    producer.flush()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        consumer.process_one(got.append, timeout=0.3)
    assert len(got) == 1, "a paused consumer must not deliver"

    consumer.resume()
    _drain(consumer, got.append, lambda: len(got) == 2)
    consumer.close()
    assert got[1].value["seq"] == 2
