"""PostgreSQL helpers shared by the services: pools, error translation, migrations."""

from qbridge.db.errors import translate, translated
from qbridge.db.migrate import Migration, MigrationError, load_migrations, migrate
from qbridge.db.pool import make_pool
from qbridge.errors import StoreUnavailableError

__all__ = [
    "Migration",
    "MigrationError",
    "StoreUnavailableError",
    "load_migrations",
    "make_pool",
    "migrate",
    "translate",
    "translated",
]
