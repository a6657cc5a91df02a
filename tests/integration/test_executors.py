"""The executors against a real Kafka broker.

classical-fallback runs as the real ``python -m classical_fallback`` process; the
quantum executor runs in a thread (and as a process with failure injection).
Every test uses its own topics and consumer group, passed through the settings.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message

from qbridge.bus import BusProducer, KafkaSettings, LagReader, ensure_topics
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec
from qbridge.contracts.convert import problem_from_avro
from qbridge.topics import DEAD_LETTERS, SOLVER_OUTCOMES, WORK_CLASSICAL, WORK_QUANTUM, TopicSpec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

MAXCUT = {
    "num_nodes": 5,
    "edges": [
        {"u": 0, "v": 1, "weight": 1.0},
        {"u": 1, "v": 2, "weight": 2.0},
        {"u": 2, "v": 3, "weight": 1.0},
        {"u": 3, "v": 4, "weight": 1.5},
        {"u": 0, "v": 4, "weight": 3.0},
        {"u": 0, "v": 2, "weight": 0.5},
        {"u": 1, "v": 3, "weight": 2.5},
    ],
}
KNAPSACK = {"values": [6.0, 10.0, 12.0, 7.0], "weights": [1, 2, 3, 2], "capacity": 5}


def _best(problem_type: str, problem: dict[str, Any]) -> float:
    p = problem_from_avro(problem_type, problem)
    values = [
        ev.objective
        for ev in (p.evaluate(b) for b in itertools.product((0, 1), repeat=p.num_variables))
        if ev.feasible
    ]
    return max(values) if p.sense.value == "maximize" else min(values)


def work_item(
    job_id: str,
    route: str,
    backend: str,
    problem_type: str = "maxcut",
    problem: dict[str, Any] = MAXCUT,
    **kw: Any,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    item = {
        "work_id": f"{job_id}:1:{route}",
        "job_id": job_id,
        "attempt": 1,
        "route": route,
        "backend": backend,
        "tenant": "acme",
        "problem_type": problem_type,
        "problem": problem,
        "time_limit_ms": 10_000,
        "shots": 1024,
        "seed": 11,
        "top_n": 3,
        "priority": 5,
        "deadline_at": now + timedelta(seconds=30),
        "correlation_id": f"corr-{job_id}",
        "enqueued_at": now,
    }
    item.update(kw)
    return item


def _topics(unique: str, work: TopicSpec) -> tuple[TopicSpec, TopicSpec, TopicSpec]:
    return (
        TopicSpec(f"test.work.{unique}", work.record, partitions=2),
        TopicSpec(f"test.outcomes.{unique}", SOLVER_OUTCOMES.record, partitions=2),
        TopicSpec(f"test.dlq.{unique}", DEAD_LETTERS.record, partitions=1),
    )


def _read_until(
    settings: KafkaSettings,
    codec: AvroCodec,
    topic: str,
    done: Any,
    timeout: float = 60.0,
) -> list[tuple[Message, dict[str, Any]]]:
    c = Consumer(
        {
            **settings.client_config(),
            "group.id": f"reader-{topic}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[tuple[Message, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(out):
            assert time.monotonic() < deadline, f"timed out; got {[v for _, v in out]}"
            m = c.poll(0.3)
            if m is not None and m.error() is None:
                out.append((m, codec.decode(m.value()).value))
    finally:
        c.close()
    return out


def _by_job(out: list[tuple[Message, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    jobs: dict[str, list[dict[str, Any]]] = {}
    for _, v in out:
        jobs.setdefault(v["job_id"], []).append(v)
    return jobs


def _final(out: list[tuple[Message, dict[str, Any]]], jobs: set[str]) -> bool:
    finals = {v["job_id"] for _, v in out if v["status"] in ("ok", "error")}
    return jobs <= finals


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(module: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _sigterm(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, proc.stdout.read() if proc.stdout else ""


def _env(settings: KafkaSettings, work: str, out: str, dlq: str, group: str, port: int) -> dict:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "QBRIDGE_WORK_TOPIC": work,
        "QBRIDGE_OUTCOMES_TOPIC": out,
        "QBRIDGE_DLQ_TOPIC": dlq,
        "QBRIDGE_CONSUMER_GROUP": group,
        "QBRIDGE_HTTP_PORT": str(port),
        "QBRIDGE_HTTP_HOST": "127.0.0.1",
    }


def test_classical_fallback_process_solves_reports_errors_and_stops_cleanly(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    work, outcomes, dlq = _topics(unique, WORK_CLASSICAL)
    ensure_topics(kafka_settings, [work, outcomes, dlq])
    producer = BusProducer(kafka_settings, codec, client_id="test-orchestrator")
    trace = "00-" + "3" * 32 + "-" + "4" * 16 + "-01"
    items = [
        work_item("j-maxcut", "classical", "ortools"),
        work_item("j-knap", "classical", "ortools", "knapsack", KNAPSACK),
        work_item(
            "j-late",
            "classical",
            "ortools",
            deadline_at=datetime.now(UTC) - timedelta(seconds=1),
        ),
        work_item("j-other", "classical", "gurobi"),
    ]
    for item in items:
        producer.send(work, item, key=item["job_id"], headers=[(h.TRACEPARENT, trace.encode())])
    producer.send_raw(work.name, b"\x00\x00\x00\x00\x03truncated", key=b"j-garbage")
    producer.flush()

    port = _free_port()
    group = f"classical-{unique}"
    env = {
        **_env(kafka_settings, work.name, outcomes.name, dlq.name, group, port),
        # Far longer than any of these solves: none of them announces its start.
        "QBRIDGE_STARTED_DELAY_MS": "5000",
    }
    proc = _start("classical_fallback", env)
    try:
        out = _read_until(
            kafka_settings,
            codec,
            outcomes.name,
            lambda o: _final(o, {i["job_id"] for i in items}),
        )
        [(dead_msg, dead)] = _read_until(kafka_settings, codec, dlq.name, lambda o: len(o) >= 1)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        code, logs = _sigterm(proc)
    assert code == 0, logs
    assert "SIGTERM received" in logs

    jobs = _by_job(out)
    for job in ("j-maxcut", "j-knap"):
        [ok] = jobs[job]  # a quick solve goes without its 'started' record
        assert ok["status"] == "ok", ok["error"]
        assert ok["work_id"] == f"{job}:1:classical"
        assert ok["route"] == "classical"
        # Small binary problems are enumerated exactly in-process before CP-SAT.
        assert ok["provenance"]["solver"] == "exact"
        assert ok["provenance"]["seed"] == 11
        assert ok["provenance"]["timings"]["queue_ms"] >= 0
        assert ok["quality"]["proven_optimal"] is True
        assert ok["solution"]["feasible"] is True
    assert jobs["j-maxcut"][0]["solution"]["objective"] == pytest.approx(_best("maxcut", MAXCUT))
    assert jobs["j-knap"][0]["solution"]["objective"] == pytest.approx(_best("knapsack", KNAPSACK))
    [late] = jobs["j-late"]  # not started at all
    assert late["status"] == "error"
    assert late["error"]["error_class"] == "over_budget"
    assert [r["status"] for r in jobs["j-other"]] == ["error"]  # refused at once
    assert jobs["j-other"][0]["error"]["error_class"] == "backend_unavailable"

    msg = next(m for m, v in out if v["job_id"] == "j-maxcut" and v["status"] == "ok")
    assert msg.key() == b"j-maxcut"
    headers = h.to_dict(msg.headers())
    assert headers[h.CORRELATION_ID] == b"corr-j-maxcut"
    assert headers[h.TRACEPARENT].startswith(b"00-" + b"3" * 32)

    assert dead["error_class"] == "invalid_input"
    assert dead["service"] == "classical-fallback"
    assert dead_msg.key() == b"j-garbage"

    assert 'qbridge_solver_solves_total{backend="ortools",route="classical",status="ok"} 2.0' in (
        metrics
    )
    reader = LagReader(kafka_settings, group)
    try:
        assert reader.total([work.name]) == 0  # SIGTERM committed what was processed
    finally:
        reader.close()


def test_quantum_executor_process_with_failure_injection(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    """QAOA answers on the healthy backend; the injected failure becomes an error outcome."""
    work, outcomes, dlq = _topics(unique, WORK_QUANTUM)
    ensure_topics(kafka_settings, [work, outcomes, dlq])
    producer = BusProducer(kafka_settings, codec, client_id="test-orchestrator-q")
    items = [
        work_item("q-ok", "quantum", "aer_statevector"),
        work_item("q-down", "quantum", "aer_mps"),
        work_item("q-real", "quantum", "ibm_runtime"),  # not served unless configured
    ]
    for item in items:
        producer.send(work, item, key=item["job_id"])
    producer.flush()

    port = _free_port()
    group = f"quantum-{unique}"
    env = {
        **_env(kafka_settings, work.name, outcomes.name, dlq.name, group, port),
        "QBRIDGE_QUANTUM_FAIL_MODE": "unavailable",
        "QBRIDGE_QUANTUM_FAIL_BACKENDS": '["aer_mps"]',
        "QBRIDGE_BACKENDS": '["aer_statevector", "aer_mps"]',
        "QBRIDGE_QAOA_P": "1",
        "QBRIDGE_QAOA_MAXITER": "10",
        "QBRIDGE_STARTED_DELAY_MS": "0",  # every start announced, failures included
    }
    proc = _start("quantum_executor", env)
    try:
        out = _read_until(
            kafka_settings,
            codec,
            outcomes.name,
            lambda o: _final(o, {i["job_id"] for i in items}),
        )
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        code, logs = _sigterm(proc)
    assert code == 0, logs

    jobs = _by_job(out)
    started, ok = jobs["q-ok"]
    assert started["status"] == "started"
    assert ok["status"] == "ok", ok["error"]
    assert ok["solution"]["objective"] == pytest.approx(_best("maxcut", MAXCUT))
    assert ok["provenance"]["solver"] == "qaoa"
    assert ok["provenance"]["backend"] == "aer_statevector"
    assert ok["provenance"]["shots"] >= 1024
    assert ok["provenance"]["seed"] == 11
    assert ok["provenance"]["circuit_depth"] > 0
    assert [r["status"] for r in jobs["q-down"]] == ["started", "error"]
    assert jobs["q-down"][1]["error"]["error_class"] == "backend_unavailable"
    assert "injected" in jobs["q-down"][1]["error"]["message"]
    assert jobs["q-real"][1]["error"]["error_class"] == "backend_unavailable"
    assert '"failure injection on aer_mps' in logs or "failure injection on aer_mps" in logs


def test_sigterm_mid_solve_finishes_the_work_item_in_hand(
    kafka_settings: KafkaSettings, codec: AvroCodec, unique: str
) -> None:
    """A SIGTERM during a solve lets it finish, reports it, commits it, then exits 0."""
    import random

    rng = random.Random(3)
    n = 40
    hard = {
        "num_nodes": n,
        "edges": [
            {"u": i, "v": j, "weight": float(rng.randint(1, 9))}
            for i in range(n)
            for j in range(i + 1, n)
            if rng.random() < 0.5
        ],
    }
    work, outcomes, dlq = _topics(unique, WORK_CLASSICAL)
    ensure_topics(kafka_settings, [work, outcomes, dlq])
    producer = BusProducer(kafka_settings, codec, client_id="test-orchestrator-slow")
    producer.send(
        work, work_item("j-slow", "classical", "ortools", problem=hard, time_limit_ms=2_000), "j"
    )
    producer.flush()

    group = f"classical-slow-{unique}"
    proc = _start(
        "classical_fallback",
        _env(kafka_settings, work.name, outcomes.name, dlq.name, group, _free_port()),
    )
    try:
        _read_until(kafka_settings, codec, outcomes.name, lambda o: len(o) >= 1)  # started
        signalled = time.monotonic()
    finally:
        code, logs = _sigterm(proc)
    took = time.monotonic() - signalled
    assert code == 0, logs
    out = _read_until(kafka_settings, codec, outcomes.name, lambda o: len(o) >= 2)
    assert [v["status"] for _, v in out] == ["started", "ok"]
    assert out[1][1]["solution"]["feasible"] is True
    assert logs.index("SIGTERM received") < logs.index("j-slow:1:classical solved"), logs
    assert took < 15
    reader = LagReader(kafka_settings, group)
    try:
        assert reader.total([work.name]) == 0  # finished and committed, not handed back
    finally:
        reader.close()
