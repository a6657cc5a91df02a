"""Versioned SQL migrations, applied in order under a PostgreSQL advisory lock.

Migrations are the files ``NNNN_name.sql`` of a package (each service that owns tables
has its own package, history table and lock key). Each pending one runs in its own
transaction together with its history row, so a failing migration leaves nothing
behind. A session-level advisory lock serializes concurrent runs: several replicas can
start at once, one applies, the others wait and then find nothing to do. Applied files
must not change: a checksum mismatch is an error (write a new migration instead).

A history table of an older layout (``version`` and ``applied_at`` only, as the
orchestrator once wrote it) is upgraded in place: its rows are adopted and their
checksums recorded on the first run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from qbridge.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "schema_migrations"
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
# An older layout had neither column: adopted rows get them on the first run.
_UPGRADE_TABLE = (
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS name text, ADD COLUMN IF NOT EXISTS checksum text"
)


class MigrationError(ConfigurationError):
    """The migration files or the database's migration history are inconsistent."""


@dataclass(frozen=True)
class Migration:
    """One SQL migration file.

    Attributes:
        version: Its number (the ``NNNN`` prefix); applied in increasing order.
        name: The rest of the file name (without ``.sql``).
        sql: The statements.
    """

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(package: str) -> list[Migration]:
    """Read the migration files of ``package``, sorted by version.

    Args:
        package: Importable package holding the ``NNNN_name.sql`` files.

    Raises:
        MigrationError: A ``.sql`` file with a bad name, or two files with one version.
    """
    found: dict[int, Migration] = {}
    for entry in resources.files(package).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _FILE.match(entry.name)
        if m is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(m["version"])
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {entry.name}")
        found[version] = Migration(version, m["name"], entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _sql(template: str, table: str) -> sql.Composed:
    return sql.SQL(template).format(table=sql.Identifier(table))


def applied_versions(
    conn: psycopg.Connection[Any], table: str = DEFAULT_TABLE
) -> dict[int, str | None]:
    """Version -> checksum of the migrations recorded in ``table`` (None: not yet recorded)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(_sql("SELECT version, checksum FROM {table}", table)).fetchall()
    return {int(v): (str(c) if c is not None else None) for v, c in rows}


def pending(
    conn: psycopg.Connection[Any], migrations: list[Migration], table: str = DEFAULT_TABLE
) -> list[Migration]:
    """The migrations not yet applied (after checking the applied ones are unchanged).

    Raises:
        MigrationError: An applied migration's file changed, or is missing.
    """
    applied = applied_versions(conn, table)
    by_version = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        m = by_version.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {version:04d}, which this build does not know "
                "(an older image against a newer schema?)"
            )
        if checksum is not None and m.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{m.name} changed after it was applied "
                "(add a new migration instead of editing an applied one)"
            )
    return [m for m in migrations if m.version not in applied]


def migrate(
    database_url: str,
    migrations: list[Migration],
    *,
    table: str = DEFAULT_TABLE,
    lock_key: int,
) -> list[Migration]:
    """Apply the pending migrations in order; safe to run concurrently and repeatedly.

    Args:
        database_url: libpq URL.
        migrations: What to apply (see :func:`load_migrations`).
        table: The history table (one per schema owner).
        lock_key: Advisory lock key serializing runs of this schema (any fixed bigint).

    Returns:
        The migrations applied by this call (empty when the schema was up to date).

    Raises:
        MigrationError: Inconsistent history (see :func:`pending`).
        psycopg.Error: The database is unreachable or a migration failed (rolled back).
    """
    done: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
        try:
            conn.execute(_sql(_CREATE_TABLE, table))
            conn.execute(_sql(_UPGRADE_TABLE, table))
            todo = pending(conn, migrations, table)
            for m in migrations:  # adopt rows of the older layout
                conn.execute(
                    _sql(
                        "UPDATE {table} SET name = %s, checksum = %s "
                        "WHERE version = %s AND checksum IS NULL",
                        table,
                    ),
                    (m.name, m.checksum, m.version),
                )
            for m in todo:
                with conn.transaction():
                    conn.execute(m.sql.encode())  # no parameters: several statements allowed
                    conn.execute(
                        _sql(
                            "INSERT INTO {table} (version, name, checksum) VALUES (%s, %s, %s)",
                            table,
                        ),
                        (m.version, m.name, m.checksum),
                    )
                logger.info("applied migration %s %04d_%s", table, m.version, m.name)
                done.append(m)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
    if not done:
        logger.info("schema of %s up to date (%d migrations)", table, len(migrations))
    return done
