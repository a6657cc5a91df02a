"""intake against a real Kafka broker: the `python -m intake` process, and the app in a thread.

Every test uses its own topics and consumer group, passed through the service's
settings (``QBRIDGE_*_TOPIC``, ``QBRIDGE_CONSUMER_GROUP``).
"""

from __future__ import annotations

import io
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message
from fastavro import schemaless_writer

from intake.app import IntakeApp
from intake.dedup import RecentlyAccepted
from qbridge.bus import (
    BusConsumer,
    BusProducer,
    DeadLetterPublisher,
    KafkaSettings,
    LagReader,
    ensure_topics,
)
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec
from qbridge.contracts.convert import problem_from_avro
from qbridge.problems.limits import Limits
from qbridge.topics import DEAD_LETTERS, JOBS_ACCEPTED, PROBLEM_REQUESTS, TopicSpec
from qbridge.validation.accept import RequestBounds, job_id_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _topics(unique: str) -> tuple[TopicSpec, TopicSpec, TopicSpec]:
    return (
        TopicSpec(f"test.requests.{unique}", PROBLEM_REQUESTS.record, partitions=2),
        TopicSpec(f"test.accepted.{unique}", JOBS_ACCEPTED.record, partitions=2),
        TopicSpec(f"test.dlq.{unique}", DEAD_LETTERS.record, partitions=1),
    )


def _request(request_id: str, problem_type: str, problem: dict[str, Any], **kw: Any) -> dict:
    req = {
        "request_id": request_id,
        "idempotency_key": None,
        "tenant": "acme",
        "problem_type": problem_type,
        "problem": problem,
        "timeout_ms": 20_000,
        "fallback_policy": "auto",
        "priority": 5,
        "shot_budget": None,
        "seed": None,
        "correlation_id": None,
        "tags": {},
        "created_at": datetime.now(UTC),
    }
    req.update(kw)
    return req


MAXCUT = {
    "num_nodes": 3,
    "edges": [{"u": 0, "v": 1, "weight": 1.0}, {"u": 1, "v": 2, "weight": 2.0}],
}
KNAPSACK = {"values": [3.0, 4.0, 5.0], "weights": [2, 3, 4], "capacity": 5}
NAN_MAXCUT = {"num_nodes": 2, "edges": [{"u": 0, "v": 1, "weight": math.nan}]}


def _encode_v1(codec: AvroCodec, record: dict[str, Any]) -> bytes:
    """A ProblemRequest written by an old producer with schema v1 (no ``seed`` field)."""
    v1 = next(
        codec.registry.by_id(i)
        for i in range(1, 100)
        if codec.registry.by_id(i).subject == PROBLEM_REQUESTS.record
    )
    assert v1.version == 1
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, v1.schema_id))
    schemaless_writer(buf, v1.parsed, {k: v for k, v in record.items() if k != "seed"})
    return buf.getvalue()


def _read(settings: KafkaSettings, topic: str, n: int, timeout: float = 30.0) -> list[Message]:
    c = Consumer(
        {
            **settings.client_config(),
            "group.id": f"reader-{topic}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.3)
            if m is not None and m.error() is None:
                out.append(m)
        # Anything beyond n would be a bug (e.g. an emitted duplicate): look a bit longer.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def topics(kafka_settings: KafkaSettings, unique: str) -> tuple[TopicSpec, TopicSpec, TopicSpec]:
    specs = _topics(unique)
    ensure_topics(kafka_settings, list(specs))
    return specs


def test_intake_process_accepts_rejects_and_stops_cleanly(
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    unique: str,
    topics: tuple[TopicSpec, TopicSpec, TopicSpec],
) -> None:
    requests, accepted, dlq = topics
    producer = BusProducer(kafka_settings, codec, client_id="test-upstream")
    trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    good = _request("r-good", "maxcut", MAXCUT, correlation_id="corr-good", priority=7)
    # Requests are keyed by tenant + idempotency key: a duplicate lands on the same partition.
    producer.send(requests, good, key="acme:mc", headers=[(h.TRACEPARENT, trace.encode())])
    producer.send_raw(
        requests.name, b"\x07garbage", key=b"acme:bad", headers=[(h.CORRELATION_ID, b"corr-bad")]
    )
    producer.send(requests, _request("r-nan", "maxcut", NAN_MAXCUT), key="acme:r-nan")
    producer.send(requests, _request("r-knap", "knapsack", KNAPSACK, seed=99), key="acme:r-knap")
    producer.send(requests, _request("r-dup", "maxcut", MAXCUT), key="acme:mc")  # duplicate
    producer.send_raw(
        requests.name, _encode_v1(codec, _request("r-v1", "qubo", {
            "num_variables": 2, "linear": [1.0, -1.0],
            "quadratic": [{"i": 0, "j": 1, "value": 2.0}], "offset": 0.0,
        })), key=b"acme:r-v1",
    )  # fmt: skip
    producer.flush()

    port = _free_port()
    group = f"intake-{unique}"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "QBRIDGE_REQUESTS_TOPIC": requests.name,
        "QBRIDGE_ACCEPTED_TOPIC": accepted.name,
        "QBRIDGE_DLQ_TOPIC": dlq.name,
        "QBRIDGE_CONSUMER_GROUP": group,
        "QBRIDGE_HTTP_PORT": str(port),
        "QBRIDGE_HTTP_HOST": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "intake"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        envelopes = _read(kafka_settings, accepted.name, 3)
        dead = _read(kafka_settings, dlq.name, 2)

        # Readiness and metrics on the service's HTTP endpoint.
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "qbridge_intake_duplicates_total 1.0" in metrics
        assert 'qbridge_dlq_messages_total{error_class="invalid_input",service="intake"} 2.0' in (
            metrics
        )

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = proc.stdout.read() if proc.stdout else ""
    assert code == 0, logs
    assert "SIGTERM received" in logs

    # Three envelopes: the exact duplicate was recognized and not re-emitted.
    values = {
        codec.decode(m.value()).value["request_id"]: (m, codec.decode(m.value()).value)
        for m in envelopes
    }
    assert sorted(values) == ["r-good", "r-knap", "r-v1"], logs
    msg, env_good = values["r-good"]
    assert msg.key() == env_good["job_id"].encode()
    problem = problem_from_avro("maxcut", MAXCUT)
    assert env_good["job_id"] == job_id_for("acme", problem.fingerprint())
    assert env_good["input_fingerprint"] == problem.fingerprint()
    assert env_good["correlation_id"] == "corr-good"
    assert env_good["priority"] == 7
    assert env_good["num_qubits"] == 3
    assert env_good["output_shape"] == {"kind": "binary", "length": 3}
    assert env_good["schema_version"] == 3  # the latest ProblemRequest (v3: classification)
    assert (env_good["deadline_at"] - env_good["accepted_at"]).total_seconds() == 20.0
    headers = h.to_dict(msg.headers())
    assert headers[h.CORRELATION_ID] == b"corr-good"
    assert headers[h.JOB_ID] == env_good["job_id"].encode()
    assert headers[h.TRACEPARENT].startswith(b"00-" + b"1" * 32)  # trace continued
    assert values["r-knap"][1]["seed"] == 99
    assert values["r-knap"][1]["num_qubits"] == 3 + 3
    assert values["r-v1"][1]["schema_version"] == 1

    # Two dead letters with their typed reasons; good messages flowed around them.
    reasons = {}
    for m in dead:
        d = codec.decode(m.value()).value
        reasons[d["error_type"]] = d
    assert set(reasons) == {"BadMagicByteError", "InvalidProblemError"}
    assert reasons["BadMagicByteError"]["original_value"] == b"\x07garbage"
    assert reasons["BadMagicByteError"]["original_headers"][h.CORRELATION_ID] == b"corr-bad"
    nan = reasons["InvalidProblemError"]
    assert nan["reason"] == "problem.edges[0].weight: must be finite, got nan"
    assert nan["error_class"] == "invalid_input"
    assert nan["service"] == "intake"
    assert nan["source_topic"] == requests.name
    assert codec.decode(nan["original_value"]).value["request_id"] == "r-nan"

    # SIGTERM committed every processed offset: nothing is left for the group.
    reader = LagReader(kafka_settings, group)
    try:
        assert reader.total([requests.name]) == 0
    finally:
        reader.close()


@pytest.fixture
def running_app(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str, topics: Any
) -> Iterator[IntakeApp]:
    """The intake app in a thread, with the in-process duplicate memory disabled."""
    requests, accepted, dlq = topics
    tracking = codec
    producer = BusProducer(kafka_settings, tracking, client_id="intake-thread")
    consumer = BusConsumer(
        kafka_settings,
        f"intake-{unique}",
        [requests],
        tracking,
        DeadLetterPublisher(producer, "intake", dlq),
        producer=producer,
    )
    app = IntakeApp(
        consumer,
        producer,
        accepted,
        limits=Limits(),
        bounds=RequestBounds(),
        recent=RecentlyAccepted(0),
    )
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        app.stop()
        thread.join(timeout=10)
        app.close()


def test_duplicates_map_to_one_job_id_without_in_process_memory(
    kafka_settings: KafkaSettings, codec: AvroCodec, running_app: IntakeApp, topics: Any
) -> None:
    """Correctness does not depend on the LRU: re-emitted duplicates carry the same job id."""
    requests, accepted, _ = topics
    producer = BusProducer(kafka_settings, codec, client_id="test-dups")
    reordered = {
        "num_nodes": 3,
        "edges": [{"u": 2, "v": 1, "weight": 2.0}, {"u": 1, "v": 0, "weight": 1.0}],
    }
    producer.send(requests, _request("d1", "maxcut", MAXCUT), key="acme:d1")
    producer.send(requests, _request("d2", "maxcut", reordered), key="acme:d2")
    producer.send(requests, _request("k1", "maxcut", MAXCUT, idempotency_key="order-7"), key="k1")
    producer.send(
        requests, _request("k2", "knapsack", KNAPSACK, idempotency_key="order-7"), key="k2"
    )
    producer.send(requests, _request("t1", "maxcut", MAXCUT, tenant="globex"), key="t1")
    producer.flush()

    got = {
        v["request_id"]: v
        for v in (codec.decode(m.value()).value for m in _read(kafka_settings, accepted.name, 5))
    }
    assert sorted(got) == ["d1", "d2", "k1", "k2", "t1"]
    assert got["d1"]["job_id"] == got["d2"]["job_id"]
    assert got["k1"]["job_id"] == got["k2"]["job_id"] == job_id_for("acme", "order-7")
    assert got["t1"]["job_id"] != got["d1"]["job_id"]
    assert got["k1"]["job_id"] != got["d1"]["job_id"]
    assert running_app.accepted == 5
