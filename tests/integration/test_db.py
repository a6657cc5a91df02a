"""The shared database helpers against a real PostgreSQL: one migration runner for both
schema owners (results-sink and the orchestrator), error translation, the read model."""

from __future__ import annotations

import psycopg
import pytest

from orchestrator.store import LOCK_KEY, MIGRATIONS_PACKAGE, MIGRATIONS_TABLE, Store
from qbridge.db import (
    Migration,
    MigrationError,
    load_migrations,
    make_pool,
    migrate,
    translated,
)
from qbridge.errors import StoreUnavailableError
from qbridge.results.read import JobReader

pytestmark = pytest.mark.integration

#: The orchestrator's history table as the previous build created it.
LEGACY_HISTORY = (
    "CREATE TABLE orch_schema_migrations ("
    " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
)


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_orchestrator_store_creates_its_tables_through_the_shared_runner(
    fresh_database: str,
) -> None:
    store = Store(fresh_database)
    try:
        store.open(timeout=30)
        store.open(timeout=30)  # a restart finds nothing to do
        assert store.counts() == {}
    finally:
        store.close()
    assert {"orch_jobs", "orch_outbox", "orch_tenant_usage", MIGRATIONS_TABLE} <= _tables(
        fresh_database
    )
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute(
            f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} ORDER BY version"
        ).fetchall()
    migrations = load_migrations(MIGRATIONS_PACKAGE)
    assert rows == [(m.version, m.name, m.checksum) for m in migrations]


def test_a_history_table_of_the_previous_layout_is_adopted(fresh_database: str) -> None:
    # A database written by the previous orchestrator: its tables exist, and its history
    # table has only (version, applied_at). The runner must neither re-run 0001 (its
    # CREATE TABLE would fail) nor refuse the table; later migrations then apply.
    first, *later = load_migrations(MIGRATIONS_PACKAGE)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(first.sql.encode())
        conn.execute(LEGACY_HISTORY)
        conn.execute("INSERT INTO orch_schema_migrations (version) VALUES (1)")
        conn.execute(
            "INSERT INTO orch_tenant_usage (tenant, shots, cost_units) VALUES ('t', 5, 1.5)"
        )
    migrations = load_migrations(MIGRATIONS_PACKAGE)
    done = migrate(fresh_database, migrations, table=MIGRATIONS_TABLE, lock_key=LOCK_KEY)
    assert done == later
    with psycopg.connect(fresh_database) as conn:
        history = conn.execute(
            "SELECT version, name, checksum FROM orch_schema_migrations ORDER BY version"
        ).fetchall()
        usage = conn.execute("SELECT shots, cost_units FROM orch_tenant_usage").fetchall()
    # checksum recorded on adoption
    assert history == [(m.version, m.name, m.checksum) for m in [first, *later]]
    assert usage == [(5, 1.5)]  # data kept
    # From now on the adopted migration is protected like any other.
    edited = [Migration(first.version, first.name, first.sql + "\n-- edited\n"), *later]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(fresh_database, edited, table=MIGRATIONS_TABLE, lock_key=LOCK_KEY)


def test_two_schema_owners_keep_separate_histories_in_one_database(fresh_database: str) -> None:
    orch = load_migrations(MIGRATIONS_PACKAGE)
    sink = load_migrations("results_sink.migrations")
    assert migrate(fresh_database, orch, table=MIGRATIONS_TABLE, lock_key=LOCK_KEY) == orch
    assert migrate(fresh_database, sink, lock_key=1) == sink
    assert migrate(fresh_database, orch, table=MIGRATIONS_TABLE, lock_key=LOCK_KEY) == []
    assert {"orch_jobs", "jobs", "solutions", "schema_migrations"} <= _tables(fresh_database)


def test_a_missing_schema_reads_as_unavailable_and_the_reader_recovers(
    fresh_database: str,
) -> None:
    pool = make_pool(fresh_database, timeout_s=5.0, application_name="qbridge-test")
    reader = JobReader(pool)
    try:
        with pytest.raises(StoreUnavailableError, match="UndefinedTable"):
            reader.job("nope")
        migrate(fresh_database, load_migrations("results_sink.migrations"), lock_key=1)
        assert reader.job("nope") is None
        assert reader.recent(limit=5) == []
        with pytest.raises(psycopg.DataError), translated(), pool.connection() as conn:
            conn.execute("SELECT 'x'::int")  # a bad value is not "unavailable"
    finally:
        pool.close()
