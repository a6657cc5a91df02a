"""Shared fixtures; integration fixtures start a REAL Kafka broker and PostgreSQL per session."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.pipeline import Pipeline
from qbridge.bus import KafkaSettings, ensure_topics
from qbridge.contracts import AvroCodec, FileSchemaRegistry
from qbridge.contracts.registry import registry_file

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
"""Service logs of the integration tests' pipelines."""

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@pytest.fixture(scope="session")
def stack() -> Iterator[object]:
    """A real local Kafka (KRaft) + PostgreSQL for the whole session, stopped at the end."""
    from devstack.stack import LocalStack

    with LocalStack() as s:
        print(f"\nlocal stack up: {s.timings}")
        yield s


@pytest.fixture(scope="session")
def kafka_settings(stack: object) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=stack.bootstrap_servers)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def database_url(stack: object) -> str:
    return stack.dsn  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(scope="session")
def codec() -> AvroCodec:
    return AvroCodec(FileSchemaRegistry(registry_file()))


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests never share topics or groups."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def fresh_database(stack: object, unique: str) -> Iterator[str]:
    """An empty database of its own on the session's PostgreSQL, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"db_{unique}"
    admin = stack.postgres.dsn_for("postgres")  # type: ignore[attr-defined]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield stack.postgres.dsn_for(name)  # type: ignore[attr-defined]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Integration tests must never be silently skipped: they are selected by marker, and
    # QBRIDGE_SKIP_INTEGRATION is the only (explicit, printed) way to leave them out.
    if os.environ.get("QBRIDGE_SKIP_INTEGRATION") == "1":
        deselected = [i for i in items if i.get_closest_marker("integration")]
        items[:] = [i for i in items if not i.get_closest_marker("integration")]
        config.hook.pytest_deselected(items=deselected)
        print(f"QBRIDGE_SKIP_INTEGRATION=1: {len(deselected)} integration tests deselected")


@contextlib.contextmanager
def running_pipeline(
    stack: Any,
    kafka_settings: KafkaSettings,
    name: str,
    *,
    check_exit: bool = True,
    **pipeline_kw: Any,
) -> Iterator[Pipeline]:
    """Every service as a process on the session's stack, logs under ``tests/artifacts``.

    Args:
        stack: The session's local stack.
        kafka_settings: Its Kafka settings (the pipeline topics are created).
        name: Prefix of the log folder.
        check_exit: Assert that every service shut down cleanly.
        **pipeline_kw: ``per_service_env`` / ``extra_env`` of :class:`Pipeline`.
    """
    ensure_topics(kafka_settings)
    p = Pipeline(
        stack.bootstrap_servers,
        stack.dsn,
        ARTIFACTS / f"{name}-{time.strftime('%H%M%S')}",
        **pipeline_kw,
    )
    p.start()
    yield p
    codes = p.stop()
    if check_exit:
        assert all(c in (0, None) for c in codes.values()), f"unclean shutdown: {codes}"
