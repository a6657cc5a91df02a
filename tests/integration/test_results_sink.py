"""results-sink against the real local Kafka and PostgreSQL.

Migrations (once, re-runnable, concurrent), idempotent storage of duplicated and
reordered records, a database outage mid-stream (nothing lost, nothing duplicated,
nothing dead-lettered), and replay of a stored classical job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, KafkaSettings, ensure_topics
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec
from qbridge.contracts.convert import outcome_fields, problem_to_avro
from qbridge.db.pool import make_pool
from qbridge.problems.base import Problem
from qbridge.problems.registry import problem_from_dict
from qbridge.solvers.base import Budget, Outcome
from qbridge.topics import (
    DEAD_LETTERS,
    JOB_OUTCOMES,
    JOB_STATUS,
    JOBS_ACCEPTED,
    SOLVER_OUTCOMES,
    TopicSpec,
)
from results_sink.app import ResultsSinkApp
from results_sink.migrate import Migration, MigrationError, load_migrations, migrate
from results_sink.store import ResultsStore

pytestmark = pytest.mark.integration

TOPICS = (JOBS_ACCEPTED, JOB_STATUS, SOLVER_OUTCOMES, JOB_OUTCOMES)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MAXCUT = problem_from_dict(
    "maxcut",
    {"num_nodes": 5, "edges": [[0, 1, 1.0], [1, 2, 2.0], [2, 3, 1.5], [3, 4, 1.0], [0, 4, 0.5]]},
)

Message = tuple[TopicSpec, dict[str, Any]]


# --- record builders ------------------------------------------------------------------


def _solution(assignment: list[int], objective: float) -> dict[str, Any]:
    return {"assignment": assignment, "objective": objective, "feasible": True, "frequency": None}


def _provenance(cost: float, seed: int = 1) -> dict[str, Any]:
    return {
        "route": "classical",
        "solver": "cp-sat",
        "backend": "ortools",
        "backend_version": "test",
        "sdk_versions": {"ortools": "test"},
        "settings_json": '{"num_workers": 1}',
        "circuit_depth": None,
        "circuit_width": None,
        "shots": None,
        "seed": seed,
        "optimizer_iterations": 3,
        "timings": {"queue_ms": 1.0, "transpile_ms": 0.0, "execute_ms": 2.0, "postprocess_ms": 0.1},
        "cache_hit": None,
        "cost_units": cost,
    }


def job_messages(
    job_id: str,
    tenant: str,
    problem: Problem = MAXCUT,
    outcome: Outcome | None = None,
    *,
    failed_attempt: bool = False,
    seed: int = 1,
) -> list[Message]:
    """Every record one job produces: envelope, transitions, solver outcomes, final outcome.

    With ``failed_attempt`` the first attempt errors (cost 0.5) and a second one succeeds.
    """
    corr = f"corr-{job_id}"
    kind, avro_problem = problem_to_avro(problem)
    env = {
        "job_id": job_id,
        "idempotency_key": f"key-{job_id}",
        "request_id": f"req-{job_id}",
        "tenant": tenant,
        "problem_type": problem.kind,
        "schema_version": 2,
        "problem": (kind, avro_problem),
        "input_fingerprint": problem.fingerprint(),
        "output_shape": {"kind": "binary", "length": problem.num_variables},
        "num_variables": problem.num_variables,
        "num_qubits": problem.num_variables,
        "timeout_ms": 20_000,
        "deadline_at": T0 + timedelta(seconds=20),
        "fallback_policy": "classical_only",
        "priority": 5,
        "shot_budget": None,
        "seed": seed,
        "correlation_id": corr,
        "tags": {"test": "results-sink"},
        "created_at": T0,
        "accepted_at": T0 + timedelta(milliseconds=5),
    }
    if outcome is not None:
        fields = outcome_fields(outcome)
    else:
        fields = {
            "solution": _solution([0, 1, 0, 1, 0], 6.0),
            "candidates": [_solution([0, 1, 0, 1, 0], 6.0), _solution([0, 1, 0, 0, 1], 4.5)],
            "quality": {
                "proven_optimal": True,
                "bound": 6.0,
                "gap": 0.0,
                "expected_objective": None,
                "confidence": 1.0,
            },
            "provenance": _provenance(1.0, seed),
        }
    attempts = [2] if failed_attempt else [1]
    statuses = ["accepted", "routed", "running"]
    transitions: list[dict[str, Any]] = []
    seq = 0
    for st in statuses:
        seq += 1
        transitions.append(
            {
                "job_id": job_id,
                "tenant": tenant,
                "seq": seq,
                "from_status": transitions[-1]["to_status"] if transitions else None,
                "to_status": st,
                "reason": "",
                "attempt": None if st == "accepted" else 1,
                "route": None if st == "accepted" else "classical",
                "backend": None if st == "accepted" else "ortools",
                "correlation_id": corr,
                "at": T0 + timedelta(milliseconds=10 * seq),
            }
        )
    solver_outcomes: list[dict[str, Any]] = []

    def so(attempt: int, status: str, **extra: Any) -> dict[str, Any]:
        base = {
            "work_id": f"{job_id}:{attempt}:classical",
            "job_id": job_id,
            "attempt": attempt,
            "route": "classical",
            "tenant": tenant,
            "status": status,
            "error": None,
            "solution": None,
            "candidates": [],
            "quality": None,
            "provenance": None,
            "correlation_id": corr,
            "produced_at": T0
            + timedelta(milliseconds=100 * attempt + (50 if status != "started" else 0)),
        }
        base.update(extra)
        return base

    if failed_attempt:
        solver_outcomes.append(so(1, "started"))
        failed_prov = {**_provenance(0.5, seed)}
        solver_outcomes.append(
            so(
                1,
                "error",
                error={"error_class": "transient", "error_type": "TimeoutError", "message": "x"},
                provenance=failed_prov,
            )
        )
        seq += 1
        transitions.append(
            {
                **transitions[-1],
                "seq": seq,
                "from_status": "running",
                "to_status": "running",
                "attempt": 2,
                "reason": "retry after transient error",
            }
        )
    for attempt in attempts:
        solver_outcomes.append(so(attempt, "started"))
        solver_outcomes.append(so(attempt, "ok", **fields))
    seq += 1
    transitions.append(
        {
            **transitions[-1],
            "seq": seq,
            "from_status": "running",
            "to_status": "succeeded",
            "at": T0 + timedelta(milliseconds=500),
        }
    )
    final = {
        "job_id": job_id,
        "tenant": tenant,
        "status": "succeeded",
        "reason": "",
        "problem_type": problem.kind,
        "input_fingerprint": problem.fingerprint(),
        "route": "classical",
        "solution": fields["solution"],
        "candidates": fields["candidates"],
        "quality": fields["quality"],
        "provenance": fields["provenance"],
        "attempts": len(attempts) + (1 if failed_attempt else 0),
        "quantum_classical_gap": None,
        "correlation_id": corr,
        "completed_at": T0 + timedelta(milliseconds=505),
    }
    return (
        [(JOBS_ACCEPTED, env)]
        + [(JOB_STATUS, t) for t in transitions]
        + [(SOLVER_OUTCOMES, o) for o in solver_outcomes]
        + [(JOB_OUTCOMES, final)]
    )


def expected_counts(messages: list[Message]) -> dict[str, int]:
    by_topic: dict[str, set[Any]] = {}
    for topic, v in messages:
        key: Any
        if topic is JOB_STATUS:
            key = (v["job_id"], v["seq"])
        elif topic is SOLVER_OUTCOMES:
            key = v["work_id"]
        else:
            key = v["job_id"]
        by_topic.setdefault(topic.name, set()).add(key)
    cands = sum(len(v["candidates"]) for t, v in messages if t is JOB_OUTCOMES)
    return {
        "jobs": len(by_topic[JOBS_ACCEPTED.name]),
        "status_transitions": len(by_topic[JOB_STATUS.name]),
        "attempts": len(by_topic[SOLVER_OUTCOMES.name]),
        "solutions": len(by_topic[JOB_OUTCOMES.name]),
        "candidates": cands,
    }


def send(producer: BusProducer, messages: list[Message]) -> None:
    for topic, value in messages:
        producer.send(
            topic,
            value,
            key=value["job_id"],
            headers=[(h.CORRELATION_ID, value["correlation_id"].encode())],
        )
    producer.flush()


# --- database helpers -----------------------------------------------------------------


def counts(database_url: str, job_ids: list[str]) -> dict[str, int]:
    out = {}
    with psycopg.connect(database_url) as conn:
        for table in ("jobs", "status_transitions", "attempts", "solutions", "candidates"):
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE job_id = ANY(%s)").format(
                    sql.Identifier(table)
                ),
                (job_ids,),
            ).fetchone()
            out[table] = int(row[0]) if row else 0
    return out


def complete(database_url: str, job_ids: list[str], expected: dict[str, int]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            got = counts(database_url, job_ids)
            with psycopg.connect(database_url) as conn:
                final = conn.execute(
                    "SELECT count(*) FROM jobs WHERE job_id = ANY(%s) AND envelope_received "
                    "AND status = 'succeeded'",
                    (job_ids,),
                ).fetchone()
        except psycopg.OperationalError:
            return False
        return got == expected and final is not None and final[0] == len(job_ids)

    return check


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def drain(
    consumer: BusConsumer, handler: Any, until: Callable[[], bool], timeout: float = 120.0
) -> None:
    """Process until ``until()``, then until the consumer is idle (duplicates handled too)."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for the sink"
        consumer.process_one(handler, timeout=0.5)
    idle = 0
    while idle < 4:
        assert time.monotonic() < deadline, "the consumer never went idle"
        idle = 0 if consumer.process_one(handler, timeout=0.5) else idle + 1


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def topics_ready(kafka_settings: KafkaSettings) -> None:
    ensure_topics(kafka_settings, [*TOPICS, DEAD_LETTERS])


@pytest.fixture
def migrated(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
def store(migrated: str) -> Iterator[ResultsStore]:
    pool = make_pool(migrated, min_size=1, max_size=4, timeout_s=2.0, reconnect_timeout_s=6.0)
    try:
        yield ResultsStore(pool)
    finally:
        pool.close()


def start_new_group_at_end(kafka_settings: KafkaSettings, group: str) -> None:
    """Commit the current end of every partition the group has no offset for yet.

    The topics are the pipeline's own, shared with every earlier test of the session: a
    new group reading them from the beginning would spend minutes on their history. A
    group that already committed (a second sink instance) keeps its offsets.
    """
    c = Consumer({**kafka_settings.client_config(), "group.id": group})
    try:
        meta = c.list_topics(timeout=10)
        parts = [
            TopicPartition(t.name, p)
            for t in TOPICS
            for p in sorted(meta.topics[t.name].partitions)
        ]
        ends = [
            TopicPartition(tp.topic, tp.partition, c.get_watermark_offsets(tp, timeout=10)[1])
            for tp in c.committed(parts, timeout=10)
            if tp.offset < 0  # nothing committed yet
        ]
        if ends:
            c.commit(offsets=ends, asynchronous=False)
    finally:
        c.close()


def make_consumer(
    kafka_settings: KafkaSettings, codec: AvroCodec, group: str, unique: str
) -> tuple[BusConsumer, BusProducer, TopicSpec]:
    """A results-sink consumer of the pipeline topics; a new group starts at their end."""
    start_new_group_at_end(kafka_settings, group)
    dlq_topic = TopicSpec(f"test.results-sink.dlq.{unique}", DEAD_LETTERS.record, partitions=1)
    ensure_topics(kafka_settings, [dlq_topic])
    producer = BusProducer(kafka_settings, codec, client_id=f"{group}-dlq")
    consumer = BusConsumer(
        kafka_settings,
        group,
        TOPICS,
        codec,
        DeadLetterPublisher(producer, "results-sink", dlq_topic),
        retry_backoff_s=0.1,
        max_backoff_s=1.0,
        on_exhausted="block",
    )
    return consumer, producer, dlq_topic


# --- migrations -----------------------------------------------------------------------


def test_migrations_apply_once_even_when_replicas_start_together(fresh_database: str) -> None:
    results: list[list[Migration]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(fresh_database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    versions = [m.version for m in load_migrations()]
    assert sorted(m.version for r in results for m in r) == versions  # each applied once
    assert migrate(fresh_database) == []  # re-runnable: nothing left to do
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
    assert [r[0] for r in rows] == versions
    assert {"jobs", "attempts", "status_transitions", "solutions", "candidates", "costs"} <= tables


def test_an_edited_applied_migration_is_refused(fresh_database: str) -> None:
    migrate(fresh_database)
    first = load_migrations()[0]
    edited = [Migration(first.version, first.name, first.sql + "\n-- edited\n")]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(fresh_database, edited)


def test_migrate_cli(fresh_database: str) -> None:
    cmd = [sys.executable, "-m", "results_sink", "migrate", "--database-url", fresh_database]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_init" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "schema up to date" in again.stdout


# --- idempotency ----------------------------------------------------------------------


def test_duplicates_and_any_order_leave_exactly_one_row_per_entity(
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    database_url: str,
    store: ResultsStore,
    topics_ready: None,
    unique: str,
) -> None:
    tenant = f"tenant-{unique}"
    job_ids = [f"job-{unique}-{i}" for i in range(4)]
    messages: list[Message] = []
    for i, job_id in enumerate(job_ids):
        messages += job_messages(job_id, tenant, failed_attempt=(i % 2 == 1))
    expected = expected_counts(messages)
    # Reversed (outcomes before transitions before envelopes), and every message twice.
    producer = BusProducer(kafka_settings, codec, client_id=f"rs-{unique}")
    consumer, _, _ = make_consumer(kafka_settings, codec, f"rs-idem-{unique}", unique)
    send(producer, list(reversed(messages)) + messages)

    app = ResultsSinkApp(store)
    try:
        drain(consumer, app.handle, complete(database_url, job_ids, expected))
        # The same messages again, as a replay from another consumer group would deliver.
        send(producer, messages)
        drain(consumer, app.handle, lambda: True)
    finally:
        consumer.close()
    assert consumer.dead_lettered == 0
    assert counts(database_url, job_ids) == expected

    for i, job_id in enumerate(job_ids):
        job = store.get_job(job_id)
        assert job is not None
        assert job["envelope_received"] and job["tenant"] == tenant
        assert job["problem_kind"] == "maxcut" and job["seed"] == 1
        assert job["status"] == "succeeded" and job["final_at"] is not None
        assert job["route"] == "classical"
        assert job["solution_objective"] == 6.0 and job["solution_assignment"] == [0, 1, 0, 1, 0]
        assert job["solution_provenance"]["settings"] == {"num_workers": 1}
        attempts = store.attempts(job_id)
        if i % 2:
            assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "error"), (2, "ok")]
            assert attempts[0]["error_class"] == "transient"
        else:
            assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "ok")]
        # started_at comes from the 'started' record, finished_at from the result, whatever order.
        assert all(a["started_at"] is not None and a["finished_at"] is not None for a in attempts)
        assert all(a["started_at"] < a["finished_at"] for a in attempts)
        seqs = [t["seq"] for t in store.transitions(job_id)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert [c["rank"] for c in store.candidates(job_id)] == [1, 2]

    # Costs per tenant: every attempt counted once (two jobs retried once at 0.5 each).
    [costs] = store.tenant_costs([tenant])
    assert costs["attempts"] == 6 and costs["jobs"] == 4
    assert costs["cost_units"] == pytest.approx(4 * 1.0 + 2 * 0.5)

    results = subprocess.run(
        [
            sys.executable,
            "-m",
            "results_sink",
            "results",
            "--database-url",
            database_url,
            "--tenant",
            tenant,
            "--limit",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert results.returncode == 0, results.stderr
    assert all(job_id in results.stdout for job_id in job_ids)
    assert "latency_ms" in results.stdout and "(4 jobs)" in results.stdout


# --- database outage ------------------------------------------------------------------


class RunningSink:
    """The real run loop (start, migrate, consume) in a background thread."""

    def __init__(
        self, kafka_settings: KafkaSettings, codec: AvroCodec, database_url: str, group: str
    ) -> None:
        self.pool = make_pool(
            database_url, min_size=1, max_size=4, timeout_s=1.0, reconnect_timeout_s=6.0
        )
        self.consumer, self.producer, _ = make_consumer(
            kafka_settings, codec, group, uuid.uuid4().hex[:8]
        )
        self.app = ResultsSinkApp(
            ResultsStore(self.pool), self.consumer, migrate=lambda: migrate(database_url)
        )
        self.thread = threading.Thread(target=self.app.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.app.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()
        self.consumer.close()
        self.producer.close()
        self.pool.close()


def test_database_outage_loses_nothing_and_duplicates_nothing(
    stack: Any,
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    database_url: str,
    migrated: str,
    topics_ready: None,
    unique: str,
) -> None:
    tenant = f"tenant-{unique}"
    group = f"rs-outage-{unique}"
    producer = BusProducer(kafka_settings, codec, client_id=f"rs-{unique}")

    def batch(name: str, n: int) -> tuple[list[str], list[Message]]:
        ids = [f"job-{unique}-{name}{i}" for i in range(n)]
        msgs: list[Message] = []
        for i, job_id in enumerate(ids):
            msgs += job_messages(job_id, tenant, failed_attempt=(i % 3 == 0))
        return ids, msgs

    sink = RunningSink(kafka_settings, codec, database_url, group)
    try:
        wait_for(lambda: sink.app.ready()[0], 60, "the sink to become ready")
        ids_a, msgs_a = batch("a", 3)
        send(producer, msgs_a)
        wait_for(complete(database_url, ids_a, expected_counts(msgs_a)), 90, "batch A")

        # Outage 1: PostgreSQL crashes while a large batch is being written.
        ids_b, msgs_b = batch("b", 12)
        send(producer, msgs_b + list(reversed(msgs_b)))
        stack.postgres.stop_process(kill=True)
        try:
            wait_for(lambda: not sink.app.ready()[0], 30, "readiness to drop")
            time.sleep(4)  # the consumer retries meanwhile: blocked, not skipping
            assert sink.thread.is_alive()
            assert sink.consumer.dead_lettered == 0
        finally:
            stack.postgres.start()
        wait_for(complete(database_url, ids_b, expected_counts(msgs_b)), 120, "batch B")
        wait_for(lambda: sink.app.ready()[0], 30, "readiness to return")

        # Outage 2: the sink is stopped while the database is down; a new instance
        # takes over after recovery. Unstored offsets were never committed.
        ids_c, msgs_c = batch("c", 4)
        stack.postgres.stop_process(kill=False)
        try:
            send(producer, msgs_c)
            time.sleep(3)
            assert sink.consumer.dead_lettered == 0
            sink.stop()
        finally:
            stack.postgres.start()
        sink = RunningSink(kafka_settings, codec, database_url, group)
        wait_for(complete(database_url, ids_c, expected_counts(msgs_c)), 120, "batch C")
        time.sleep(3)  # let any stray redelivery land before counting
        assert sink.consumer.dead_lettered == 0
    finally:
        if not stack.postgres.is_running:
            stack.postgres.start()
        sink.stop()

    all_ids = ids_a + ids_b + ids_c
    assert counts(database_url, all_ids) == expected_counts(msgs_a + msgs_b + msgs_c)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), sum(cost_units) FROM costs WHERE tenant = %s", (tenant,)
        ).fetchone()
    retried = sum(1 for ids in (ids_a, ids_b, ids_c) for i in range(len(ids)) if i % 3 == 0)
    assert row is not None
    assert row[0] == len(all_ids) + retried
    assert row[1] == pytest.approx(len(all_ids) * 1.0 + retried * 0.5)


# --- replay ---------------------------------------------------------------------------


def _store_solved_job(
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    database_url: str,
    store: ResultsStore,
    unique: str,
    name: str,
    problem: Problem,
    outcome: Outcome,
    seed: int,
) -> str:
    job_id = f"job-{unique}-{name}"
    messages = job_messages(job_id, f"tenant-{unique}", problem, outcome, seed=seed)
    consumer, _, _ = make_consumer(kafka_settings, codec, f"rs-{name}-{unique}", unique)
    send(BusProducer(kafka_settings, codec, client_id=f"rs-{unique}"), messages)
    app = ResultsSinkApp(store)
    try:
        drain(consumer, app.handle, complete(database_url, [job_id], expected_counts(messages)))
    finally:
        consumer.close()
    return job_id


def _replay(database_url: str, job_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "results_sink",
            "replay",
            job_id,
            "--database-url",
            database_url,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_replay_of_a_stored_classical_job_gives_the_same_answer(
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    database_url: str,
    store: ResultsStore,
    topics_ready: None,
    unique: str,
) -> None:
    from qbridge.solvers.classical import CpSatSolver

    problem = problem_from_dict(
        "knapsack",
        {
            "values": [6.0, 5.0, 8.0, 9.0, 6.0, 7.0, 3.0],
            "weights": [2, 3, 6, 7, 5, 9, 4],
            "capacity": 20,
        },
    )
    seed = 12345
    outcome = CpSatSolver().solve(problem, Budget(time_limit_s=10.0, seed=seed))
    job_id = _store_solved_job(
        kafka_settings, codec, database_url, store, unique, "classical", problem, outcome, seed
    )
    same = _replay(database_url, job_id)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "MATCH" in same.stdout
    stored = store.get_job(job_id)
    assert stored is not None
    assert stored["solution_assignment"] == list(outcome.best.assignment)

    # Tamper with the stored answer: the replay must notice.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE solutions SET objective = objective - 1, "
            "assignment = array_fill(0::bigint, ARRAY[cardinality(assignment)]) "
            "WHERE job_id = %s",
            (job_id,),
        )
    differs = _replay(database_url, job_id, "--json")
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert '"matches": false' in differs.stdout

    missing = _replay(database_url, f"nope-{unique}")
    assert missing.returncode == 2 and "not in the results store" in missing.stderr


def test_replay_of_a_stored_quantum_job_gives_the_same_answer(
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    database_url: str,
    store: ResultsStore,
    topics_ready: None,
    unique: str,
) -> None:
    from qbridge.solvers.quantum import QaoaSolver

    seed = 4242
    outcome = QaoaSolver("aer_statevector").solve(
        MAXCUT, Budget(time_limit_s=30.0, shots=1024, seed=seed)
    )
    assert outcome.provenance.settings["stop_reason"] != "time_limit"
    job_id = _store_solved_job(
        kafka_settings, codec, database_url, store, unique, "quantum", MAXCUT, outcome, seed
    )
    same = _replay(database_url, job_id, "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert '"matches": true' in same.stdout and '"backend": "aer_statevector"' in same.stdout


# --- the service process --------------------------------------------------------------


def test_service_process_serves_stores_and_stops_on_sigterm(
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    database_url: str,
    topics_ready: None,
    unique: str,
) -> None:
    import signal
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "QBRIDGE_HTTP_PORT": str(port),
        "QBRIDGE_HTTP_HOST": "127.0.0.1",
        "QBRIDGE_CONSUMER_GROUP": f"rs-proc-{unique}",
        "QBRIDGE_LOG_FORMAT": "text",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "results_sink"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    try:
        wait_for(lambda: get("/readyz")[0] == 200, 60, "/readyz")
        job_id = f"job-{unique}-proc"
        messages = job_messages(job_id, f"tenant-{unique}")
        send(BusProducer(kafka_settings, codec, client_id=f"rs-{unique}"), messages)
        wait_for(complete(database_url, [job_id], expected_counts(messages)), 60, "the job")
        wait_for(
            lambda: (
                'qbridge_results_sink_rows_total{result="inserted",table="solutions"}'
                in get("/metrics")[1]
            ),
            10,
            "metrics",
        )
        metrics = get("/metrics")[1]
        assert 'qbridge_messages_consumed_total{result="ok",service="results-sink"' in metrics
        assert "qbridge_results_sink_database_up 1.0" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out = proc.stdout.read() if proc.stdout else ""
    assert "results-sink stopped" in out, out[-3000:]
