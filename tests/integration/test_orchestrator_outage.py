"""The orchestrator against a database that goes away, and quota charged once per attempt.

This module runs its own PostgreSQL cluster (the session's one is shared by other
tests), so it can stop and start it at will; Kafka is the session broker.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.pipeline import Pipeline
from devstack.postgres import PostgresServer
from orchestrator.app import OrchestratorApp
from orchestrator.config import OrchestratorSettings
from orchestrator.store import Store, StoreUnavailableError
from qbridge.bus import BusProducer, KafkaSettings, Record, ensure_topics
from qbridge.contracts import AvroCodec
from qbridge.contracts.convert import provenance_to_avro
from qbridge.problems.limits import Limits
from qbridge.samples import problem_request, regular_maxcut
from qbridge.solvers.base import Provenance, Route
from qbridge.validation.accept import accept
from tests.integration.test_pipeline import submit, wait_final

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        pg.start()
        yield pg


class _Producer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_raw(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> None:
        self.sent.append(topic)

    def flush(self, timeout: float = 30.0) -> None:
        return None


def _record(subject: str, value: dict[str, Any]) -> Record:
    return Record("t", 0, 0, None, value, subject, {}, 0)


def test_a_redelivered_quantum_outcome_is_charged_once(
    own_postgres: PostgresServer, codec: AvroCodec
) -> None:
    tenant = f"quota-{uuid.uuid4().hex[:8]}"
    store = Store(own_postgres.dsn)
    store.open()
    try:
        app = OrchestratorApp(
            OrchestratorSettings(tenant_shot_quota={tenant: 1_000_000}),
            store,
            _Producer(),  # type: ignore[arg-type]
            codec,
            {},
        )
        request = problem_request(
            regular_maxcut(6, __import__("random").Random(1)),
            tenant=tenant,
            fallback_policy="quantum_only",
        )
        request["problem"] = request["problem"][1]  # as decoded: the record, not the branch
        encoded = codec.encode("qbridge.JobEnvelope", accept(request, datetime.now(UTC), Limits()))
        envelope = codec.decode(encoded).value  # as the orchestrator receives it
        app.handle(_record("qbridge.JobEnvelope", envelope))
        with store.transaction() as conn:
            loaded = store.load(conn, envelope["job_id"])
        assert loaded is not None
        [attempt] = loaded[0].attempts
        assert attempt.route == "quantum"
        prov = Provenance(route=Route.QUANTUM, solver="qaoa", backend="aer_statevector")
        outcome = {
            "work_id": attempt.work_id,
            "job_id": envelope["job_id"],
            "attempt": attempt.attempt,
            "route": "quantum",
            "tenant": tenant,
            "status": "ok",
            "error": None,
            "solution": {"assignment": [0, 1] * 3, "objective": 3.0, "feasible": True},
            "candidates": [],
            "quality": None,
            "provenance": {**provenance_to_avro(prov), "shots": 512, "cost_units": 2.5},
            "correlation_id": envelope["correlation_id"],
            "produced_at": datetime.now(UTC),
        }
        for _ in range(3):  # first delivery, then two redeliveries of the same outcome
            app.handle(_record("qbridge.SolverOutcome", outcome))
        assert store.usage(tenant) == (512, 2.5)
    finally:
        store.close()


@pytest.fixture(scope="module")
def outage_pipeline(
    stack: Any, kafka_settings: KafkaSettings, own_postgres: PostgresServer
) -> Iterator[Pipeline]:
    ensure_topics(kafka_settings)
    p = Pipeline(
        stack.bootstrap_servers,
        own_postgres.dsn,
        ARTIFACTS / f"outage-{time.strftime('%H%M%S')}",
    )
    p.start()
    yield p
    p.stop()


def test_store_open_gives_up_with_a_typed_error(own_postgres: PostgresServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    store = Store(f"postgresql://postgres@127.0.0.1:{port}/qbridge")
    with pytest.raises(StoreUnavailableError, match="database unavailable"):
        store.open(timeout=1.0)
    store.close()


def test_orchestrator_survives_a_database_outage_while_idle_and_at_start(
    outage_pipeline: Pipeline,
    own_postgres: PostgresServer,
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
) -> None:
    producer = BusProducer(kafka_settings, codec, client_id="outage-upstream")
    rng = __import__("random").Random(11)
    first = [submit(producer, regular_maxcut(6, rng), tenant="outage") for _ in range(2)]
    wait_final(outage_pipeline, own_postgres.dsn, first)

    # Idle orchestrator, PostgreSQL down for a few seconds: its timers fail meanwhile.
    own_postgres.stop_process(kill=True)
    time.sleep(5)
    orchestrator = outage_pipeline["orchestrator"]
    assert orchestrator.proc is not None and orchestrator.proc.poll() is None, orchestrator.tail()
    own_postgres.start()
    after = [submit(producer, regular_maxcut(6, rng), tenant="outage") for _ in range(3)]
    wait_final(outage_pipeline, own_postgres.dsn, after, timeout=150)
    assert orchestrator.proc.poll() is None
    assert "periodic work failed" in orchestrator.log_path.read_text()

    # Start-up while the database is down: the orchestrator waits for it (each try waits
    # up to 10 s for a connection; 12 s down means at least one failed try and a retry).
    orchestrator.stop()
    own_postgres.stop_process()
    orchestrator.start()
    threading.Timer(12.0, own_postgres.start).start()
    orchestrator.wait_ready(timeout=120)
    late = [submit(producer, regular_maxcut(6, rng), tenant="outage") for _ in range(3)]
    wait_final(outage_pipeline, own_postgres.dsn, late, timeout=150)
    assert "database not reachable yet" in orchestrator.log_path.read_text()
