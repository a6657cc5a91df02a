"""A poison pill cannot stop intake: a ~1 MB request lands on the DLQ, the next jobs flow.

Runs the real ``python -m intake`` process (its wiring applies the request byte budget)
against the real broker.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from typing import Any

import pytest

from qbridge.bus import BusProducer, KafkaSettings, ensure_topics
from qbridge.contracts import AvroCodec
from qbridge.topics import MAX_REQUEST_BYTES, PROBLEM_REQUESTS
from tests.integration.test_intake import REPO, _free_port, _read, _request, _topics

pytestmark = pytest.mark.integration


def _big_maxcut(target_bytes: int) -> dict[str, Any]:
    """MaxCut on 2,000 nodes with as many distinct edges as fit ``target_bytes`` (~12 B each)."""
    rng = random.Random(7)
    edges: set[tuple[int, int]] = set()
    count = target_bytes // 12
    while len(edges) < count:
        u, v = rng.sample(range(2000), 2)
        edges.add((min(u, v), max(u, v)))
    return {
        "num_nodes": 2000,
        "edges": [{"u": u, "v": v, "weight": 1.0} for u, v in sorted(edges)],
    }


def test_one_megabyte_request_is_dead_lettered_and_the_pipeline_keeps_flowing(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    requests, accepted, dlq = _topics(unique)
    ensure_topics(kafka_settings, [requests, accepted, dlq])
    big = _request("r-big", "maxcut", _big_maxcut(1_000_000))
    big_bytes = codec.encode(PROBLEM_REQUESTS.record, big)
    assert MAX_REQUEST_BYTES < len(big_bytes) < 1_048_576  # inside the documented limits
    # A careless upstream producer configured for large messages (the broker takes it).
    upstream = BusProducer(
        kafka_settings, codec, "test-upstream", overrides={"message.max.bytes": 2_000_000}
    )
    upstream.send_raw(requests.name, big_bytes, key=b"acme:big")
    for i in range(20):
        problem = {"num_nodes": 2, "edges": [{"u": 0, "v": 1, "weight": float(i + 1)}]}
        upstream.send(requests, _request(f"r-{i}", "maxcut", problem), key=f"acme:{i}")
    upstream.flush()

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "QBRIDGE_REQUESTS_TOPIC": requests.name,
        "QBRIDGE_ACCEPTED_TOPIC": accepted.name,
        "QBRIDGE_DLQ_TOPIC": dlq.name,
        "QBRIDGE_CONSUMER_GROUP": f"intake-{unique}",
        "QBRIDGE_HTTP_PORT": str(_free_port()),
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
        envelopes = _read(kafka_settings, accepted.name, 20, timeout=60)
        dead = _read(kafka_settings, dlq.name, 1, timeout=30)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = proc.stdout.read() if proc.stdout else ""
    assert alive and code == 0, logs[-3000:]

    ids = sorted(codec.decode(m.value()).value["request_id"] for m in envelopes)
    assert ids == sorted(f"r-{i}" for i in range(20)), logs[-3000:]
    assert len(dead) == 1
    record = codec.decode(dead[0].value()).value
    assert record["error_type"] == "MessageTooLargeError"
    assert record["error_class"] == "invalid_input"
    assert "too large" in record["reason"]
    assert f"{len(big_bytes)} bytes" in record["reason"]
    assert record["source_topic"] == requests.name
    assert record["original_value"] == big_bytes  # fits the DLQ whole: nothing truncated
