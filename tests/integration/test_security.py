"""The locked-down local stack: Kafka SASL/SCRAM + ACLs, one PostgreSQL role per service.

A stack of its own (``LocalStack(secure=True)``): the client listener is
SASL_PLAINTEXT/SCRAM-SHA-512, every service has its own principal, and the
StandardAuthorizer grants each only what ``qbridge.bus.acls`` says; every service
logs in to PostgreSQL under the group role its migrations created. The whole
pipeline then runs the sample workload with exactly these rights.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from qbridge.bus.acls import SERVICE_ACCESS
from qbridge.topics import (
    ALL_TOPICS,
    APPROVALS,
    JOB_OUTCOMES,
    JOB_STATUS,
    PROBLEM_REQUESTS,
    SOLVER_OUTCOMES,
    WORK_CLASSICAL,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[Any]:
    from devstack.stack import LocalStack

    with LocalStack(secure=True) as s:
        yield s


def _produce(config: dict[str, Any], topic: str) -> KafkaError | None:
    """Produce one record idempotently (as BusProducer does); the delivery error or None."""
    errors: list[KafkaError | None] = []
    producer = Producer({**config, "enable.idempotence": True, "message.timeout.ms": 15000})
    producer.produce(topic, b"value", key=b"key", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(20)
    assert len(errors) == 1, "no delivery report within 20s"
    return errors[0]


def _user_config(stack: Any, service: str) -> dict[str, Any]:
    return dict(stack.kafka.client_config(SERVICE_ACCESS[service].principal))


def test_admin_sees_every_pipeline_topic(secure_stack: Any) -> None:
    admin = AdminClient(secure_stack.kafka.client_config())
    topics = set(admin.list_topics(timeout=15).topics)
    assert {t.name for t in ALL_TOPICS} <= topics


def test_client_without_credentials_is_refused(secure_stack: Any) -> None:
    plain = {"bootstrap.servers": secure_stack.bootstrap_servers, "socket.timeout.ms": 3000}
    with pytest.raises(KafkaException):
        AdminClient(plain).list_topics(timeout=5)
    # The same request with credentials is answered: the refusal is about auth.
    assert AdminClient(secure_stack.kafka.client_config()).list_topics(timeout=15).brokers


def test_wrong_password_is_refused(secure_stack: Any) -> None:
    seen: list[KafkaError] = []
    producer = Producer(
        {
            **_user_config(secure_stack, "gateway"),
            "sasl.password": "not-the-password",
            "error_cb": seen.append,
        }
    )
    with pytest.raises(KafkaException):
        producer.list_topics(timeout=5)
    for _ in range(20):  # error callbacks are served by poll()
        producer.poll(0.5)
        if any(e.code() == KafkaError._AUTHENTICATION for e in seen):
            break
    assert any(e.code() == KafkaError._AUTHENTICATION for e in seen), seen


def test_gateway_writes_requests_but_cannot_forge_outcomes(secure_stack: Any) -> None:
    gateway = _user_config(secure_stack, "gateway")
    assert _produce(gateway, PROBLEM_REQUESTS.name) is None
    # Reviewers' decisions go through the gateway (the orchestrator and the results
    # sink dead-letter this undecodable one).
    assert _produce(gateway, APPROVALS.name) is None
    for forged in (JOB_OUTCOMES.name, JOB_STATUS.name, SOLVER_OUTCOMES.name):
        err = _produce(gateway, forged)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (
            forged,
            err,
        )


def test_orchestrator_writes_work_but_not_requests(secure_stack: Any) -> None:
    orchestrator = _user_config(secure_stack, "orchestrator")
    # (Work, not outcomes: the pipeline test below reads every outcome from the start;
    # the classical executor dead-letters this undecodable record.)
    assert _produce(orchestrator, WORK_CLASSICAL.name) is None
    err = _produce(orchestrator, PROBLEM_REQUESTS.name)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_consumer_may_only_read_its_own_topics_in_its_own_group(secure_stack: Any) -> None:
    def first_error(service: str, topic: str, group: str) -> KafkaError | None:
        consumer = Consumer(
            {
                **_user_config(secure_stack, service),
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            for _ in range(20):
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is not None:
                    return msg.error()  # type: ignore[no-any-return]
                if msg is not None:
                    return None
            return None
        finally:
            consumer.close()

    # Intake reading problem requests in its group: records, no error.
    assert first_error("intake", PROBLEM_REQUESTS.name, "qbridge-intake") is None
    # The intake principal reading another service's topic, or in a foreign group.
    refused = first_error("intake", JOB_OUTCOMES.name, "qbridge-intake")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    refused = first_error("intake", PROBLEM_REQUESTS.name, "qbridge-results-sink")
    assert refused is not None and refused.code() == KafkaError.GROUP_AUTHORIZATION_FAILED


# ------------------------------------------------------------------ PostgreSQL

_DENIED = psycopg.errors.InsufficientPrivilege


def _db(stack: Any, service: str) -> psycopg.Connection[Any]:
    return psycopg.connect(stack.service_env(service)["DATABASE_URL"], autocommit=True)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO jobs (job_id) VALUES ('forged')",
        "UPDATE jobs SET status = 'succeeded'",
        "DELETE FROM solutions",
        "INSERT INTO status_transitions (job_id) VALUES ('forged')",
        "INSERT INTO approvals (decision_id, job_id, decision, reviewer, decided_at) "
        "VALUES ('d', 'j', 'approve', 'me', now())",
        "DELETE FROM approvals",
        "DELETE FROM job_progress",
        "SELECT count(*) FROM orch_outbox",
        "INSERT INTO orch_outbox (job_id, topic, key, value) VALUES ('j', 't', 'k', 'v')",
        "UPDATE orch_jobs SET final = true",
        "CREATE TABLE gateway_was_here (x int)",
    ],
)
def test_gateway_role_is_read_only(secure_stack: Any, statement: str) -> None:
    with _db(secure_stack, "gateway") as conn:
        # May read the results, approvals included.
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM approvals").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM job_progress").fetchone() is not None
        with pytest.raises(_DENIED):
            conn.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO jobs (job_id) VALUES ('forged')",
        "UPDATE solutions SET feasible = false",
        "SELECT count(*) FROM jobs",
    ],
)
def test_orchestrator_role_cannot_touch_results(secure_stack: Any, statement: str) -> None:
    with _db(secure_stack, "orchestrator") as conn:
        assert conn.execute("SELECT count(*) FROM orch_outbox").fetchone() is not None
        with pytest.raises(_DENIED):
            conn.execute(statement)


def test_results_sink_role_cannot_touch_the_outbox(secure_stack: Any) -> None:
    with _db(secure_stack, "results-sink") as conn:
        assert conn.execute("SELECT count(*) FROM solutions").fetchone() is not None
        # owns every results table, those of later migrations (job progress) too
        conn.execute("DELETE FROM job_progress WHERE job_id = 'none'")
        with pytest.raises(_DENIED):
            conn.execute("SELECT count(*) FROM orch_outbox")


def test_each_service_migrates_its_own_schema_under_its_role(secure_stack: Any) -> None:
    # Owners of their tables and history: a start-up migration run finds nothing to do
    # (and may still run ALTER/CREATE IF NOT EXISTS on its history table).
    from orchestrator.store import LOCK_KEY, MIGRATIONS_PACKAGE, MIGRATIONS_TABLE
    from qbridge.db import load_migrations, migrate
    from results_sink.migrate import migrate as migrate_results

    assert migrate_results(secure_stack.service_env("results-sink")["DATABASE_URL"]) == []
    orch = secure_stack.service_env("orchestrator")["DATABASE_URL"]
    orch_migrations = load_migrations(MIGRATIONS_PACKAGE)
    assert migrate(orch, orch_migrations, table=MIGRATIONS_TABLE, lock_key=LOCK_KEY) == []


# ------------------------------------------------------------------ the pipeline


@pytest.mark.slow
def test_pipeline_runs_the_sample_workload_with_least_privilege(
    secure_stack: Any, tmp_path: Path
) -> None:
    from devstack.pipeline import Pipeline
    from devstack.run import publish_samples, wait_final, wait_stored
    from qbridge.bus import BusProducer, KafkaSettings
    from qbridge.contracts import AvroCodec, default_registry

    def settings(service: str | None) -> KafkaSettings:
        user = SERVICE_ACCESS[service].principal if service else None
        env = secure_stack.kafka.service_env(user)
        return KafkaSettings.model_validate(
            {k.removeprefix("KAFKA_").lower(): v for k, v in env.items()}
        )

    pipeline = Pipeline.for_stack(secure_stack, tmp_path / "logs")
    codec = AvroCodec(default_registry())
    try:
        pipeline.start()
        # Upstream submits with the gateway's rights (WRITE on problem requests only).
        producer = BusProducer(settings("gateway"), codec, client_id="security-test")
        expected = publish_samples(producer, "secure")
        done = wait_final(settings(None), codec, expected, timeout=240)
        missing = sorted(expected[c] for c in set(expected) - set(done))
        assert not missing, (missing, {n: s.tail(10) for n, s in pipeline.services.items()})
        # Stored by the results sink; readable with the gateway's read-only role.
        gateway_dsn = secure_stack.service_env("gateway")["DATABASE_URL"]
        assert wait_stored(gateway_dsn, list(done)) == len(expected)
    finally:
        codes = pipeline.stop()
    assert all(code in (0, None) for code in codes.values()), codes
    for svc in pipeline.services.values():
        assert "AUTHORIZATION_FAILED" not in svc.tail(400), svc.name


def test_ops_tool_upserts_scram_users_on_a_running_broker(secure_stack: Any) -> None:
    # What a compose one-shot job does when the broker was formatted without users.
    from ops.kafka_users import apply, passwords_from_env
    from qbridge.bus import KafkaSettings

    env = {
        f"QBRIDGE_KAFKA_PASSWORD_{s.upper().replace('-', '_')}": "rotated" for s in SERVICE_ACCESS
    }
    admin = KafkaSettings.model_validate(
        {k.removeprefix("KAFKA_").lower(): v for k, v in secure_stack.kafka.service_env().items()}
    )
    assert apply(admin, passwords_from_env(env)) > 0
    gateway = {**_user_config(secure_stack, "gateway"), "sasl.password": "rotated"}
    assert _produce(gateway, PROBLEM_REQUESTS.name) is None
    err = _produce(gateway, JOB_OUTCOMES.name)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
