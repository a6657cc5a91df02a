"""Integration tests of tools/devstack: a real Kafka broker (KRaft) and a real PostgreSQL.

Nothing is mocked: the first run downloads the Kafka jars from Maven Central (and,
as root, installs PostgreSQL with apt-get if it is missing).

Run: ``PYTHONPATH=tools .venv/bin/python -m pytest tests/integration/test_devstack.py -v -s``
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from devstack import LocalStack, procs  # noqa: E402
from devstack.cli import read_env_file  # noqa: E402

pytestmark = pytest.mark.integration

TIMEOUT = 60.0  # generous: a loaded 2-core machine


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TOOLS), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    """One Kafka + PostgreSQL for the whole module."""
    with LocalStack() as local:
        yield local


def _create_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"devstack-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
    )
    futures[topic].result(timeout=TIMEOUT)
    return topic


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in records:
        producer.produce(
            topic, key=key, value=value, headers=[("trace", b"t-1")], on_delivery=on_delivery
        )
    assert producer.flush(TIMEOUT) == 0, "messages still in flight"
    assert errors == []


def _consume(bootstrap: str, topic: str, count: int) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"devstack-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[Message] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(received) < count and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received.append(msg)
        if received:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return received


def test_startup_timings(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    """Both services come up; start-up time is printed, never asserted."""
    assert stack.kafka is not None and stack.kafka.is_running
    assert stack.postgres is not None and stack.postgres.is_running
    assert set(stack.timings) >= {"fetch", "kafka", "postgres", "total"}
    with capsys.disabled():
        print(
            "\n[devstack] start-up: " + ", ".join(f"{k} {v:.1f}s" for k, v in stack.timings.items())
        )
    env = stack.env()
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == stack.bootstrap_servers
    assert env["DATABASE_URL"].startswith("postgresql://postgres@127.0.0.1:")
    assert env["DATABASE_URL"].endswith("/qbridge")


def test_kafka_create_topic_produce_consume(stack: LocalStack) -> None:
    """A topic can be created; a message goes through the real broker intact."""
    bootstrap = stack.bootstrap_servers
    topic = _create_topic(bootstrap, partitions=3)
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=TIMEOUT)
    assert len(metadata.topics[topic].partitions) == 3

    _produce(bootstrap, topic, [(b"job-1", b"hello qbridge")])
    [msg] = _consume(bootstrap, topic, 1)
    assert (msg.key(), msg.value()) == (b"job-1", b"hello qbridge")
    assert msg.headers() == [("trace", b"t-1")]


def test_kafka_topics_are_not_auto_created(stack: LocalStack) -> None:
    """``auto.create.topics.enable=false``: asking for an unknown topic does not create it."""
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    missing = f"devstack-missing-{uuid.uuid4().hex[:8]}"
    metadata = admin.list_topics(topic=missing, timeout=TIMEOUT)
    error = metadata.topics[missing].error
    assert error is not None
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_postgres_query(stack: LocalStack) -> None:
    """The qbridge database accepts DDL, writes and reads."""
    with psycopg.connect(stack.dsn, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_database(), current_user, current_setting('server_version')"
        ).fetchone()
        assert row is not None
        assert row[:2] == ("qbridge", "postgres")
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO probe VALUES (1, 'x') ON CONFLICT DO NOTHING")
        conn.execute("INSERT INTO probe VALUES (1, 'x') ON CONFLICT DO NOTHING")
        assert conn.execute("SELECT count(*) FROM probe").fetchone() == (1,)


def test_kafka_restart_keeps_messages(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Messages acknowledged before a broker restart are readable after it."""
    broker = stack.kafka
    assert broker is not None
    bootstrap = broker.bootstrap_servers
    topic = _create_topic(bootstrap)
    records = [(f"k{i}".encode(), f"before-restart-{i}".encode()) for i in range(3)]
    _produce(bootstrap, topic, records)

    old_pid = broker.pid
    broker.restart()
    with capsys.disabled():
        print(f"\n[devstack] kafka restart: {broker.last_start_seconds:.1f}s")
    assert broker.pid != old_pid
    assert broker.bootstrap_servers == bootstrap

    _produce(bootstrap, topic, [(b"k3", b"after-restart")])
    got = [(m.key(), m.value()) for m in _consume(bootstrap, topic, 4)]
    assert got == [*records, (b"k3", b"after-restart")]


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill-9"])
def test_postgres_restart_keeps_data(stack: LocalStack, kill: bool) -> None:
    """Committed rows survive a server restart (also after SIGKILL of the server)."""
    server = stack.postgres
    assert server is not None
    table = f"outage_{'kill' if kill else 'stop'}"
    with psycopg.connect(server.dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (v text)")
        conn.execute(f"INSERT INTO {table} VALUES ('committed')")

    server.stop_process(kill=kill)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn, connect_timeout=2).close()
    server.start()

    with psycopg.connect(server.dsn) as conn:
        assert conn.execute(f"SELECT v FROM {table}").fetchall() == [("committed",)]


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from devstack import LocalStack
    stack = LocalStack().start()
    print(json.dumps({"kafka": stack.kafka.pid, "postgres": stack.postgres.pid,
                      "dirs": [str(stack.kafka.workdir), str(stack.postgres.workdir)]}), flush=True)
    time.sleep(600)
    """
)


def test_services_die_with_their_parent() -> None:
    """SIGKILL of the owning Python process takes Kafka and PostgreSQL down too."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True, env=_env(), cwd=REPO
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, f"child failed to start the stack (exit {child.wait(30)})"
        info: dict[str, Any] = json.loads(line)
        assert procs.pid_alive(info["kafka"]) and procs.pid_alive(info["postgres"])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert procs.wait_pid_gone(info["kafka"], 60), "kafka outlived its parent"
    assert procs.wait_pid_gone(info["postgres"], 60), "postgres outlived its parent"
    # The next work dir created sweeps the orphans' dirs.
    procs.sweep_stale_dirs()
    assert not any(Path(d).exists() for d in info["dirs"])


def test_cli_up_detach_status_down(tmp_path: Path) -> None:
    """``up --detach`` writes a usable env file; ``down`` stops everything."""
    env_file = tmp_path / "devstack.env"
    cli = [sys.executable, "-m", "devstack", "--env-file", str(env_file)]
    up = subprocess.run(
        [*cli, "up", "--detach"], env=_env(), capture_output=True, text=True, timeout=300
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env = read_env_file(env_file)
        assert {
            "DEVSTACK_PID",
            "KAFKA_BOOTSTRAP_SERVERS",
            "DATABASE_URL",
            "KAFKA_PID",
            "POSTGRES_PID",
        } <= set(env)
        with psycopg.connect(env["DATABASE_URL"], connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
        assert admin.list_topics(timeout=TIMEOUT).brokers
        del admin  # no reconnect noise from librdkafka once the broker stops
        status = subprocess.run(
            [*cli, "status"], env=_env(), capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        down = subprocess.run(
            [*cli, "down"], env=_env(), capture_output=True, text=True, timeout=300
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert not env_file.exists()
    for key in ("DEVSTACK_PID", "KAFKA_PID", "POSTGRES_PID"):
        assert procs.wait_pid_gone(int(env[key]), 30), f"{key} still running after down"
