"""Durable orchestrator state in PostgreSQL: job states and a transactional outbox.

A job's new state and the messages it causes are written in one transaction;
messages are then produced and marked sent. A crash in between leaves unsent
rows that :meth:`Store.unsent` finds and the app re-sends (downstream writes
are idempotent on the deterministic keys), so nothing is lost or stranded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from orchestrator.machine import JobState
from qbridge.db import load_migrations, make_pool, migrate, translated
from qbridge.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "orchestrator.migrations"
MIGRATIONS_TABLE = "orch_schema_migrations"
LOCK_KEY = 0x0B1D6E  # advisory lock serializing migrations across replicas


@dataclass(frozen=True)
class OutboxRow:
    """A message to produce."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str]
    id: int | None = None


class Store:
    """Job states, outbox and tenant usage."""

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 4) -> None:
        """Start a connection pool opening in the background."""
        self._dsn = dsn
        # No check on checkout: every transaction would pay one more round trip; a broken
        # connection fails the transaction, which is retried (StoreUnavailableError).
        self._pool: ConnectionPool = make_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout_s=10.0,
            application_name="qbridge-orchestrator",
            check=False,
        )

    def open(self, timeout: float = 30.0) -> None:
        """Wait for PostgreSQL and apply pending migrations (``migrations/NNNN_name.sql``).

        Args:
            timeout: How long to keep retrying while the database is unreachable
                (a restart of PostgreSQL or of the whole stack must not fail start-up).

        Raises:
            StoreUnavailableError: Still unreachable after ``timeout`` seconds.
            MigrationError: The schema's history does not match this build.
        """
        deadline = time.monotonic() + timeout
        backoff = 0.5
        while True:
            try:
                # Not ConnectionPool.wait(): on a timeout it closes the pool for good. The
                # pool keeps connecting in the background; the migration runner uses its
                # own connection, so its success means the database is back.
                self._migrate()
                return
            except StoreUnavailableError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                pause = min(backoff, left)
                logger.warning("database not reachable yet (%s); retrying in %.1fs", exc, pause)
                time.sleep(pause)
                backoff = min(backoff * 2, 5.0)

    def _migrate(self) -> None:
        """Apply pending migrations with the shared runner (history in ``orch_schema_migrations``).

        Raises:
            StoreUnavailableError: The database cannot be reached.
            MigrationError: The schema's history does not match this build.
        """
        with translated():
            migrate(
                self._dsn,
                load_migrations(MIGRATIONS_PACKAGE),
                table=MIGRATIONS_TABLE,
                lock_key=LOCK_KEY,
            )

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()

    def healthy(self) -> bool:
        """Whether a trivial query succeeds now."""
        try:
            with self._pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside a transaction (committed on success, rolled back on error).

        Raises:
            StoreUnavailableError: The database cannot be reached.
        """
        with translated(), self._pool.connection() as conn, conn.transaction():
            yield conn

    # --- jobs -------------------------------------------------------------------------

    def load(
        self, conn: psycopg.Connection[Any], job_id: str, skip_locked: bool = False
    ) -> tuple[JobState, dict[str, Any]] | None:
        """Load and row-lock a job's state and envelope."""
        lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
        row = conn.execute(
            f"SELECT state, envelope FROM orch_jobs WHERE job_id = %s {lock}", (job_id,)
        ).fetchone()
        if row is None:
            return None
        return JobState.from_json(row[0]), row[1]

    def load_many(
        self, conn: psycopg.Connection[Any], job_ids: Collection[str]
    ) -> dict[str, tuple[JobState, dict[str, Any], str]]:
        """Load and row-lock (in id order) the known jobs among ``job_ids``.

        Returns:
            ``job_id -> (state, envelope, input fingerprint)``.
        """
        if not job_ids:
            return {}
        rows = conn.execute(
            "SELECT job_id, state, envelope, fingerprint FROM orch_jobs"
            " WHERE job_id = ANY(%s) ORDER BY job_id FOR UPDATE",
            (sorted(job_ids),),
        ).fetchall()
        return {r[0]: (JobState.from_json(r[1]), r[2], str(r[3])) for r in rows}

    def insert_many(
        self,
        conn: psycopg.Connection[Any],
        jobs: Sequence[tuple[JobState, Mapping[str, Any], str]],
    ) -> None:
        """Record new jobs ``(state, envelope, input fingerprint)`` in one statement.

        The envelope may hold Avro values (datetimes, bytes): see :func:`to_json_text`.
        """
        if not jobs:
            return
        conn.execute(
            "INSERT INTO orch_jobs (job_id, tenant, status, final, timer_ms, fingerprint,"
            " envelope, state)"
            " SELECT j, t, s, f, tm, fp, e::jsonb, st::jsonb FROM unnest(%b::text[],"
            " %b::text[], %b::text[], %b::boolean[], %b::bigint[], %b::text[], %b::text[],"
            " %b::text[]) AS u(j, t, s, f, tm, fp, e, st)",
            _columns(
                [
                    (
                        st.job_id,
                        st.tenant,
                        st.status,
                        st.final,
                        st.timer_ms,
                        fingerprint,
                        to_json_text(envelope),
                        to_json_text(st.to_json()),
                    )
                    for st, envelope, fingerprint in jobs
                ],
                8,
            ),
        )

    def save(self, conn: psycopg.Connection[Any], st: JobState) -> None:
        """Persist a changed state."""
        self.save_many(conn, [st])

    def save_many(self, conn: psycopg.Connection[Any], states: Sequence[JobState]) -> None:
        """Persist changed states of distinct jobs in one statement."""
        if not states:
            return
        conn.execute(
            "UPDATE orch_jobs AS o SET status = u.s, final = u.f, timer_ms = u.tm,"
            " state = u.st::jsonb, updated_at = now()"
            " FROM unnest(%b::text[], %b::text[], %b::boolean[], %b::bigint[], %b::text[])"
            " AS u(j, s, f, tm, st) WHERE o.job_id = u.j",
            _columns(
                [
                    (st.job_id, st.status, st.final, st.timer_ms, to_json_text(st.to_json()))
                    for st in states
                ],
                5,
            ),
        )

    def due(self, now_ms: int, limit: int = 100) -> list[str]:
        """Ids of non-final jobs whose timer is due."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT job_id FROM orch_jobs WHERE NOT final AND timer_ms <= %s"
                " ORDER BY timer_ms LIMIT %s",
                (now_ms, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per status (for tests and the readiness detail)."""
        with self.transaction() as conn:
            rows = conn.execute("SELECT status, count(*) FROM orch_jobs GROUP BY status").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # --- outbox -----------------------------------------------------------------------

    def add_outbox(
        self, conn: psycopg.Connection[Any], job_id: str, rows: Sequence[OutboxRow]
    ) -> list[OutboxRow]:
        """Queue messages in the current transaction; returns them with ids."""
        return self.add_outbox_many(conn, [(job_id, r) for r in rows])

    def add_outbox_many(
        self, conn: psycopg.Connection[Any], rows: Sequence[tuple[str, OutboxRow]]
    ) -> list[OutboxRow]:
        """Queue ``(job id, message)`` pairs in the current transaction.

        One statement (the rows as arrays, unnested); returns the messages with their
        ids, in order.
        """
        if not rows:
            return []
        got = conn.execute(
            "INSERT INTO orch_outbox (job_id, topic, key, value, headers)"
            " SELECT j, t, k, v, h::jsonb FROM unnest(%b::text[], %b::text[], %b::text[],"
            " %b::bytea[], %b::text[]) WITH ORDINALITY AS u(j, t, k, v, h, n) ORDER BY n"
            " RETURNING id",
            _columns(
                [(job_id, r.topic, r.key, r.value, to_json_text(r.headers)) for job_id, r in rows],
                5,
            ),
        ).fetchall()
        # Ids come from the sequence in insertion order, which follows ORDER BY n: sorted,
        # they line up with the input whatever order RETURNING lists them in.
        ids = sorted(int(r[0]) for r in got)
        return [
            OutboxRow(r.topic, r.key, r.value, r.headers, rid)
            for (_, r), rid in zip(rows, ids, strict=True)
        ]

    def mark_sent(self, ids: Sequence[int], conn: psycopg.Connection[Any] | None = None) -> None:
        """Mark outbox rows as produced and acknowledged.

        Args:
            ids: Outbox row ids.
            conn: Mark inside this open transaction (e.g. the next batch's) instead of
                in a transaction of its own.
        """
        if not ids:
            return
        sql = "UPDATE orch_outbox SET sent_at = now() WHERE id = ANY(%s)"
        if conn is not None:
            conn.execute(sql, (list(ids),))
            return
        with self.transaction() as own:
            own.execute(sql, (list(ids),))

    def unsent(self, older_than_s: float, limit: int = 500) -> list[OutboxRow]:
        """Outbox rows not marked sent after ``older_than_s`` seconds (a crash, or a failure)."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT id, topic, key, value, headers FROM orch_outbox WHERE sent_at IS NULL"
                " AND created_at < now() - make_interval(secs => %s) ORDER BY id LIMIT %s",
                (older_than_s, limit),
            ).fetchall()
        return [OutboxRow(r[1], r[2], bytes(r[3]), dict(r[4]), int(r[0])) for r in rows]

    # --- tenant usage -----------------------------------------------------------------

    def add_usage(
        self,
        conn: psycopg.Connection[Any],
        tenant: str,
        shots: int,
        cost_units: float,
        job_id: str,
        attempt: int,
    ) -> bool:
        """Charge the quantum usage of one attempt of a job to its tenant, at most once.

        Returns:
            False if this (job, attempt) was charged before (a redelivered outcome).
        """
        row = conn.execute(
            "WITH charge AS (INSERT INTO orch_usage_charges (job_id, attempt) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1)"
            " INSERT INTO orch_tenant_usage (tenant, shots, cost_units)"
            " SELECT %s, %s, %s FROM charge"
            " ON CONFLICT (tenant) DO UPDATE SET shots = orch_tenant_usage.shots + EXCLUDED.shots,"
            " cost_units = orch_tenant_usage.cost_units + EXCLUDED.cost_units RETURNING 1",
            (job_id, attempt, tenant, shots, cost_units),
        ).fetchone()
        return row is not None

    def usage(self, tenant: str) -> tuple[int, float]:
        """Shots and cost units a tenant has used on quantum routes so far."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT shots, cost_units FROM orch_tenant_usage WHERE tenant = %s", (tenant,)
            ).fetchone()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (one array parameter each, for ``unnest``).

    Passed in binary (``%b``): the text form of an array escapes every element with a
    regular expression, which for JSON documents cost more than the whole statement.
    """
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


# orjson: a native encoder, several times the standard one on job states; datetimes go
# through _default (epoch milliseconds), keys that are not strings are written as strings.
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def to_json_text(value: Any) -> str:
    """JSON text of Avro values: datetimes as epoch milliseconds, bytes as hex.

    Non-finite floats become ``null`` (JSON has no NaN; PostgreSQL would refuse it).

    Raises:
        TypeError: A value JSON cannot represent.
    """
    return orjson.dumps(value, default=_default, option=_JSON_OPTIONS).decode()


def _default(v: Any) -> Any:
    if isinstance(v, datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")
