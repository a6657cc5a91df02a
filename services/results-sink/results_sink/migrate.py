"""The results schema's migrations: ``migrations/NNNN_name.sql`` of this package.

Applied by the shared runner :mod:`qbridge.db.migrate` (history in ``schema_migrations``).
"""

from __future__ import annotations

from qbridge.db.migrate import Migration, MigrationError
from qbridge.db.migrate import load_migrations as _load
from qbridge.db.migrate import migrate as _migrate

__all__ = [
    "LOCK_KEY",
    "MIGRATIONS_PACKAGE",
    "Migration",
    "MigrationError",
    "load_migrations",
    "migrate",
]

MIGRATIONS_PACKAGE = "results_sink.migrations"
LOCK_KEY = 0x7162_7273_696E_6B01  # "qbrsink" + 1: any fixed bigint unique to this schema
TABLE = "schema_migrations"


def load_migrations() -> list[Migration]:
    """This package's migration files, sorted by version."""
    return _load(MIGRATIONS_PACKAGE)


def migrate(database_url: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply the pending results migrations (see :func:`qbridge.db.migrate.migrate`)."""
    migrations = load_migrations() if migrations is None else migrations
    return _migrate(database_url, migrations, table=TABLE, lock_key=LOCK_KEY)
