"""Migrate one service's schema as the database owner, then create its services' logins.

The services' migrations create NOLOGIN group roles (``qbridge_results_sink``,
``qbridge_results_reader``, ``qbridge_orchestrator``) and hand them the tables; they
need a migrator that owns the tables and may create roles. This one-shot job runs them
with the owner's ``DATABASE_URL``, then creates (or resets the password of) one LOGIN
role per service, a member of its group role, with the password from
``QBRIDGE_DB_PASSWORD_<SERVICE>``::

    python -m ops.db_init results-sink     # results schema; results-sink and gateway logins
    python -m ops.db_init orchestrator     # orch_* schema; orchestrator login

Each runs in the image of the service whose migrations it applies (docker-compose's
``db-init-*`` services, the Kubernetes init containers); the services then connect as
``<service>_svc`` and their start-up migration run finds nothing to do. Idempotent, and
retried for ``--wait`` seconds while the database is unreachable or a concurrent run
(another replica's init container) holds the same catalog rows.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Mapping

from qbridge.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: Group role (created by the services' migrations) each service logs in under.
SERVICE_DB_ROLES: dict[str, str] = {
    "results-sink": "qbridge_results_sink",
    "orchestrator": "qbridge_orchestrator",
    "gateway": "qbridge_results_reader",
}

#: Schema (named by the service whose migrations create it) -> services whose group
#: roles those migrations create.
SCHEMA_LOGINS: dict[str, tuple[str, ...]] = {
    "results-sink": ("results-sink", "gateway"),
    "orchestrator": ("orchestrator",),
}

PASSWORD_ENV = "QBRIDGE_DB_PASSWORD_{}"
URL_ENV = "QBRIDGE_DB_URL_{}"


def login_name(service: str) -> str:
    """The LOGIN role of ``service``, e.g. ``results_sink_svc``."""
    return f"{service.replace('-', '_')}_svc"


def password_env(service: str) -> str:
    """Name of the variable holding ``service``'s password, e.g. ``QBRIDGE_DB_PASSWORD_GATEWAY``."""
    return PASSWORD_ENV.format(service.upper().replace("-", "_"))


def url_env(service: str) -> str:
    """Name of the variable holding ``service``'s URL, e.g. ``QBRIDGE_DB_URL_GATEWAY``."""
    return URL_ENV.format(service.upper().replace("-", "_"))


def login_password(service: str, env: Mapping[str, str]) -> str:
    """The password ``service`` logs in with, from its password or its URL variable.

    Raises:
        ConfigurationError: Neither is set, or the URL names another user or no password.
    """
    if env.get(password_env(service)):
        return env[password_env(service)]
    url = env.get(url_env(service))
    if not url:
        raise ConfigurationError(f"{password_env(service)} (or {url_env(service)}) is not set")
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    if info.get("user") != login_name(service) or not info.get("password"):
        raise ConfigurationError(
            f"{url_env(service)} must log in as {login_name(service)} with a password"
        )
    return str(info["password"])


def migrate_schema(schema: str, owner_dsn: str) -> list[str]:
    """Apply the pending migrations of one schema as its owner.

    Args:
        schema: ``results-sink`` or ``orchestrator`` (its package must be importable).
        owner_dsn: libpq URL of the database owner.

    Returns:
        Names of the migrations applied now.

    Raises:
        ConfigurationError: Unknown schema.
    """
    if schema == "results-sink":
        from results_sink.migrate import migrate as migrate_results

        return [m.name for m in migrate_results(owner_dsn)]
    if schema == "orchestrator":
        from orchestrator.store import LOCK_KEY, MIGRATIONS_PACKAGE, MIGRATIONS_TABLE
        from qbridge.db import load_migrations, migrate

        done = migrate(
            owner_dsn,
            load_migrations(MIGRATIONS_PACKAGE),
            table=MIGRATIONS_TABLE,
            lock_key=LOCK_KEY,
        )
        return [m.name for m in done]
    raise ConfigurationError(f"unknown schema {schema!r} (one of {', '.join(SCHEMA_LOGINS)})")


def create_login(owner_dsn: str, user: str, password: str, member_of: str) -> None:
    """Create (or reset the password of) a LOGIN role that inherits a group role.

    Args:
        owner_dsn: libpq URL of a role allowed to create roles and grant ``member_of``.
        user: Login role name.
        password: Its password.
        member_of: Group role granted to it (created by a migration).
    """
    import psycopg
    from psycopg import sql

    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN INHERIT PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(user))
        )


def init_schema(schema: str, owner_dsn: str, env: Mapping[str, str]) -> dict[str, str]:
    """Migrate ``schema``, then create the logins of the services it serves.

    Args:
        schema: See :func:`migrate_schema`.
        owner_dsn: libpq URL of the database owner.
        env: Where the ``QBRIDGE_DB_PASSWORD_<SERVICE>`` passwords are read.

    Returns:
        Service name -> its login role.

    Raises:
        ConfigurationError: Unknown schema, or a password is missing (checked first).
    """
    if schema not in SCHEMA_LOGINS:
        raise ConfigurationError(f"unknown schema {schema!r} (one of {', '.join(SCHEMA_LOGINS)})")
    passwords = {service: login_password(service, env) for service in SCHEMA_LOGINS[schema]}
    applied = migrate_schema(schema, owner_dsn)
    logger.info("%s: %d migration(s) applied %s", schema, len(applied), applied)
    logins = {}
    for service, password in passwords.items():
        create_login(owner_dsn, login_name(service), password, SERVICE_DB_ROLES[service])
        logins[service] = login_name(service)
    return logins


def init_with_retries(
    schema: str, owner_dsn: str, env: Mapping[str, str], wait_s: float
) -> dict[str, str]:
    """:func:`init_schema`, retried for ``wait_s`` seconds on database errors.

    Retried: the database not accepting connections yet, and a concurrent run updating
    the same role or schema privileges ("tuple concurrently updated").

    Raises:
        ConfigurationError: Bad arguments (not retried).
        psycopg.Error: The last database error once ``wait_s`` has passed.
    """
    import psycopg

    deadline = time.monotonic() + wait_s
    delay = 1.0
    while True:
        try:
            return init_schema(schema, owner_dsn, env)
        except psycopg.Error as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: %s; retrying in %.0fs", schema, str(exc).strip(), delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m ops.db_init {results-sink,orchestrator} [--wait S]``."""
    parser = argparse.ArgumentParser(prog="python -m ops.db_init", description=__doc__)
    parser.add_argument("schema", choices=sorted(SCHEMA_LOGINS))
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to keep retrying")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    owner = os.environ.get("DATABASE_URL")
    if not owner:
        raise ConfigurationError("DATABASE_URL (the database owner) is not set")
    logins = init_with_retries(args.schema, owner, os.environ, args.wait)
    print(f"{args.schema}: schema migrated; logins {', '.join(sorted(logins.values()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
