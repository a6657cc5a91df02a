"""Kafka and PostgreSQL together, started in parallel."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from types import TracebackType
from typing import Self

from devstack.errors import DevstackError
from devstack.kafka import KafkaAuth, KafkaBroker, ensure_jars
from devstack.postgres import PostgresServer, ensure_postgres_installed
from devstack.service import DEFAULT_START_TIMEOUT, LocalService

logger = logging.getLogger(__name__)


class LocalStack:
    """A Kafka broker and a PostgreSQL server for one test session or dev shell.

    Example:
        >>> with LocalStack() as stack:  # doctest: +SKIP
        ...     print(stack.env())

    Args:
        kafka: Broker to run (default ``KafkaBroker()``); pass ``None`` with
            ``with_kafka=False`` to skip it.
        postgres: Server to run (default ``PostgresServer()``).
        with_kafka: Run a broker at all.
        with_postgres: Run PostgreSQL at all.
        start_timeout: Seconds allowed for the whole start.
        secure: Lock the stack down: the default broker gets SASL/SCRAM, one
            principal per service and ACLs from ``qbridge.bus.acls`` (not when
            ``kafka`` is given); PostgreSQL gets the schemas migrated by the
            superuser and one LOGIN role per service in its migration-made group
            role (``ops.db_init.SERVICE_DB_ROLES``), whose URLs :meth:`service_env` hands out.

    Attributes:
        timings: Seconds per step of the last :meth:`start` (``fetch``,
            ``kafka``, ``postgres``, ``total``).
    """

    def __init__(
        self,
        *,
        kafka: KafkaBroker | None = None,
        postgres: PostgresServer | None = None,
        with_kafka: bool = True,
        with_postgres: bool = True,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        secure: bool = False,
    ) -> None:
        default_kafka = (
            (lambda: KafkaBroker(auth=KafkaAuth.for_services())) if secure else KafkaBroker
        )
        self.kafka: KafkaBroker | None = (kafka or default_kafka()) if with_kafka else None
        self.postgres: PostgresServer | None = (
            (postgres or PostgresServer()) if with_postgres else None
        )
        self.start_timeout = start_timeout
        self.secure = secure
        self.timings: dict[str, float] = {}
        self.service_dsns: dict[str, str] = {}

    @property
    def services(self) -> list[LocalService]:
        """The services of this stack."""
        return [s for s in (self.kafka, self.postgres) if s is not None]

    @property
    def bootstrap_servers(self) -> str:
        """Kafka ``bootstrap.servers``.

        Raises:
            DevstackError: If the stack has no broker.
        """
        if self.kafka is None:
            raise DevstackError("this LocalStack runs no Kafka")
        return self.kafka.bootstrap_servers

    @property
    def dsn(self) -> str:
        """PostgreSQL URL of the ``qbridge`` database.

        Raises:
            DevstackError: If the stack has no PostgreSQL.
        """
        if self.postgres is None:
            raise DevstackError("this LocalStack runs no PostgreSQL")
        return self.postgres.dsn

    def env(self) -> dict[str, str]:
        """Return the connection settings as environment variables.

        Returns:
            ``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` and the PIDs / logs.
        """
        env: dict[str, str] = {}
        if self.kafka is not None:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka.bootstrap_servers
            env["KAFKA_PID"] = str(self.kafka.pid or "")
            env["KAFKA_LOG"] = str(self.kafka.log_path)
        if self.postgres is not None:
            env["DATABASE_URL"] = self.postgres.dsn
            env["POSTGRES_PID"] = str(self.postgres.pid or "")
            env["POSTGRES_LOG"] = str(self.postgres.log_path)
        return env

    def service_env(self, service: str) -> dict[str, str]:
        """Connection environment of one pipeline service, with its own credentials.

        Args:
            service: Service name (``qbridge.bus.acls.SERVICE_ACCESS`` key).

        Returns:
            ``KAFKA_*`` (its SCRAM principal on a locked-down broker, where
            ``QBRIDGE_CREATE_TOPICS=false`` too) and ``DATABASE_URL``.
        """
        env: dict[str, str] = {}
        if self.kafka is not None:
            user = None
            if self.kafka.auth is not None:
                from qbridge.bus.acls import SERVICE_ACCESS

                user = SERVICE_ACCESS[service].principal
                # The admin created the topics; a service may not (as in Kubernetes).
                env["QBRIDGE_CREATE_TOPICS"] = "false"
            env.update(self.kafka.service_env(user))
        if self.postgres is not None:
            env["DATABASE_URL"] = self.service_dsns.get(service, self.postgres.dsn)
        return env

    def _lock_down_database(self) -> None:
        """Migrate both schemas as the superuser, then create one login per service."""
        import secrets

        from ops.db_init import SCHEMA_LOGINS, init_schema, login_name, password_env

        assert self.postgres is not None
        services = [s for logins in SCHEMA_LOGINS.values() for s in logins]
        passwords = {password_env(s): secrets.token_urlsafe(18) for s in services}
        for schema in SCHEMA_LOGINS:
            init_schema(schema, self.postgres.dsn, passwords)
        self.service_dsns = {
            s: self.postgres.dsn_for(
                self.postgres.database, login_name(s), passwords[password_env(s)]
            )
            for s in services
        }

    def start(self) -> Self:
        """Fetch what is missing, then start every service in parallel.

        Returns:
            self.

        Raises:
            DevstackError: If a service fails; the others are stopped again.
        """
        started = time.monotonic()
        self.timings = {}
        # Installs first (sequential, usually no-ops), so that the two start
        # threads never race on apt or Maven.
        if self.kafka is not None:
            ensure_jars()
        if self.postgres is not None:
            ensure_postgres_installed()
        self.timings["fetch"] = time.monotonic() - started

        def _start(service: LocalService) -> float:
            t0 = time.monotonic()
            service.start(self.start_timeout)
            return time.monotonic() - t0

        services = self.services
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(services) or 1) as pool:
            futures = {pool.submit(_start, s): s for s in services}
            errors: list[BaseException] = []
            for future, service in futures.items():
                try:
                    self.timings[service.kind] = future.result()
                except BaseException as exc:
                    errors.append(exc)
        if not errors and self.secure and self.postgres is not None:
            try:
                self._lock_down_database()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            self.stop()
            raise errors[0]
        self.timings["total"] = time.monotonic() - started
        logger.info(
            "local stack up in %.1fs (%s)",
            self.timings["total"],
            ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items() if k != "total"),
        )
        return self

    def stop(self) -> None:
        """Stop every service and delete its data (in parallel). Idempotent."""
        services = self.services
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(services) or 1) as pool:
            for future in [pool.submit(s.stop) for s in services]:
                try:
                    future.result()
                except Exception:
                    logger.exception("stopping a service failed")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
