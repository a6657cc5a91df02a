"""Versioned SQL migrations, applied in order under a PostgreSQL advisory lock.

Migrations are the files ``migrations/NNNN_name.sql`` of this package. Each pending
one runs in its own transaction together with its ``schema_migrations`` row, so a
failing migration leaves nothing behind. A session-level advisory lock serializes
concurrent runs: several replicas can start at once, one applies, the others wait
and then find nothing to do. Applied files must not change: a checksum mismatch
is an error (write a new migration instead).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from qbridge.errors import ConfigurationError

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "results_sink.migrations"
LOCK_KEY = 0x7162_7273_696E_6B01  # "qbrsink" + 1: any fixed bigint unique to this schema
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


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


def load_migrations(package: str = MIGRATIONS_PACKAGE) -> list[Migration]:
    """Read the migration files of ``package``, sorted by version.

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


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """Version -> checksum of the migrations recorded in ``schema_migrations``."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(v): str(c) for v, c in rows}


def pending(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """The migrations not yet applied (after checking the applied ones are unchanged).

    Raises:
        MigrationError: An applied migration's file changed, or is missing.
    """
    migrations = load_migrations() if migrations is None else migrations
    applied = applied_versions(conn)
    by_version = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        m = by_version.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {version:04d}, which this build does not know "
                "(an older image against a newer schema?)"
            )
        if m.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{m.name} changed after it was applied "
                "(add a new migration instead of editing an applied one)"
            )
    return [m for m in migrations if m.version not in applied]


def migrate(database_url: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply the pending migrations in order; safe to run concurrently and repeatedly.

    Args:
        database_url: libpq URL.
        migrations: What to apply (default: this package's files).

    Returns:
        The migrations applied by this call (empty when the schema was up to date).

    Raises:
        MigrationError: Inconsistent history (see :func:`pending`).
        psycopg.Error: The database is unreachable or a migration failed (rolled back).
    """
    migrations = load_migrations() if migrations is None else migrations
    done: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(_CREATE_TABLE)
            for m in pending(conn, migrations):
                with conn.transaction():
                    conn.execute(m.sql.encode())  # no parameters: several statements allowed
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                logger.info("applied migration %04d_%s", m.version, m.name)
                done.append(m)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    if not done:
        logger.info("schema up to date (%d migrations)", len(migrations))
    return done
