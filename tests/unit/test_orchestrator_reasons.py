"""The orchestrator app carries the degrade-reason code on the wire and in its metrics.

Runs :class:`orchestrator.app.OrchestratorApp` on an in-memory store and a
recording producer (no Kafka, no database): a job too large for the quantum
backend is answered classically; its outcome and final transition carry
``reason_code`` and ``qbridge_fallbacks_total`` is labelled with the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from orchestrator.app import OrchestratorApp
from orchestrator.config import OrchestratorSettings
from orchestrator.machine import JobState
from orchestrator.store import OutboxRow
from qbridge import topics
from qbridge.bus import Record
from qbridge.contracts import AvroCodec, default_registry
from qbridge.status import DegradeReason, JobStatus

T0 = 1_700_000_000_000


class MemoryStore:
    """The part of :class:`orchestrator.store.Store` the app uses, in a dict."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[JobState, dict[str, Any]]] = {}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield None

    def fingerprint(self, conn: None, job_id: str) -> str | None:
        return None if job_id not in self.jobs else self.jobs[job_id][1]["input_fingerprint"]

    def insert(self, conn: None, st: JobState, envelope: dict[str, Any], fp: str) -> None:
        self.jobs[st.job_id] = (JobState.from_json(st.to_json()), envelope)

    def load(self, conn: None, job_id: str) -> tuple[JobState, dict[str, Any]] | None:
        st, env = self.jobs[job_id]
        return JobState.from_json(st.to_json()), env

    def save(self, conn: None, st: JobState) -> None:
        self.jobs[st.job_id] = (JobState.from_json(st.to_json()), self.jobs[st.job_id][1])

    def add_outbox(self, conn: None, job_id: str, rows: list[OutboxRow]) -> list[OutboxRow]:
        return rows

    # The batch path (one transaction per consumed batch).
    def load_many(
        self, conn: None, job_ids: Iterable[str]
    ) -> dict[str, tuple[JobState, dict[str, Any], str]]:
        out = {}
        for job_id in job_ids:
            if job_id in self.jobs:
                st, env = self.jobs[job_id]
                out[job_id] = (JobState.from_json(st.to_json()), env, env["input_fingerprint"])
        return out

    def insert_many(self, conn: None, jobs: list[tuple[JobState, dict[str, Any], str]]) -> None:
        for st, env, fp in jobs:
            self.insert(conn, st, env, fp)

    def save_many(self, conn: None, states: list[JobState]) -> None:
        for st in states:
            self.save(conn, st)

    def add_outbox_many(self, conn: None, rows: list[tuple[str, OutboxRow]]) -> list[OutboxRow]:
        return [r for _, r in rows]

    def add_usage(self, conn: None, tenant: str, shots: int, cost: float) -> None:
        pass

    def usage(self, tenant: str) -> tuple[int, float]:
        return 0, 0.0

    def mark_sent(self, ids: Sequence[int]) -> None:
        pass


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send_raw(self, topic: str, value: bytes, **_: Any) -> None:
        self.sent.append((topic, value))

    def flush(self) -> None:
        pass


def envelope() -> dict[str, Any]:
    return {
        "job_id": "job-big",
        "tenant": "acme",
        "problem_type": "maxcut",
        "problem": {"num_nodes": 3, "edges": [{"u": 0, "v": 1, "weight": 1.0}]},
        "input_fingerprint": "fp-1",
        "num_qubits": 40,  # more than any local backend
        "correlation_id": "c-1",
        "priority": 5,
        "fallback_policy": "auto",
        "seed": 7,
        "shot_budget": 100,
        "timeout_ms": 10_000,
        "deadline_at": datetime.fromtimestamp((T0 + 10_000) / 1000, UTC),
    }


def fallbacks(reason: str) -> float:
    value = REGISTRY.get_sample_value("qbridge_fallbacks_total", {"reason": reason})
    return value or 0.0


def test_degraded_job_carries_its_reason_code_on_the_wire_and_in_the_metric() -> None:
    codec = AvroCodec(default_registry())
    producer = RecordingProducer()
    settings = OrchestratorSettings(backend_max_qubits={"aer_statevector": 24})
    app = OrchestratorApp(
        settings,
        MemoryStore(),
        producer,
        codec,
        clock=lambda: T0,  # type: ignore[arg-type]
    )
    before = fallbacks(DegradeReason.QUBITS)

    app.handle(Record("t", 0, 0, b"job-big", envelope(), "qbridge.JobEnvelope", {}, T0))
    [work] = [codec.decode(v).value for t, v in producer.sent if t == topics.WORK_CLASSICAL.name]
    outcome = {
        "work_id": work["work_id"],
        "job_id": "job-big",
        "attempt": work["attempt"],
        "route": "classical",
        "tenant": "acme",
        "correlation_id": "c-1",
        "status": "ok",
        "error": None,
        "solution": {"assignment": [1, 0, 0], "objective": 1.0, "feasible": True},
        "candidates": [],
        "quality": None,
        "provenance": None,
    }
    app.handle(Record("t", 0, 1, b"job-big", outcome, "qbridge.SolverOutcome", {}, T0))

    decoded = [codec.decode(v).value for t, v in producer.sent]
    [final] = [d for d in decoded if "completed_at" in d]
    assert final["status"] == JobStatus.DEGRADED
    assert final["reason_code"] == DegradeReason.QUBITS == "qubits"
    assert "needs 40 qubits" in final["reason"]
    transitions = [d for d in decoded if "to_status" in d]
    assert [(t["to_status"], t["reason_code"]) for t in transitions] == [
        ("accepted", None),
        ("routed", "qubits"),
        ("degraded", "qubits"),
    ]
    assert fallbacks(DegradeReason.QUBITS) == before + 1
