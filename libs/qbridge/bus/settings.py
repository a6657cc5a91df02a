"""Kafka connection settings, shared by every service (environment prefix ``KAFKA_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from qbridge.errors import ConfigurationError


class KafkaSettings(BaseSettings):
    """How to reach Kafka.

    Attributes:
        bootstrap_servers: Comma-separated ``host:port`` list.
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_SSL``...
        sasl_mechanism: E.g. ``SCRAM-SHA-512`` (with SASL protocols).
        sasl_username: SASL user.
        sasl_password: SASL password (prefer ``sasl_password_file`` outside dev shells).
        sasl_password_file: File holding the SASL password (a mounted secret); read
            at each :meth:`client_config` when ``sasl_password`` is unset.
        ssl_ca_location: CA bundle for SSL protocols.
        replication_factor: Used when the services create missing topics (3 in production).
        min_insync_replicas: ``min.insync.replicas`` for created topics (2 in production).
        group_instance_id: Static group membership (e.g. a StatefulSet pod name): a
            restarted instance takes its partitions back at once instead of waiting for
            the session timeout. Applied to the service's one group consumer only.
        session_timeout_ms: How long a silent member (e.g. killed with SIGKILL) keeps
            its partitions.
    """

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, repr=False)
    sasl_password_file: Path | None = None
    ssl_ca_location: str | None = None
    replication_factor: int = 1
    min_insync_replicas: int = 1
    group_instance_id: str | None = None
    session_timeout_ms: int = 10_000

    def password(self) -> str | None:
        """The SASL password: ``sasl_password``, else the first line of ``sasl_password_file``.

        Raises:
            ConfigurationError: The password file cannot be read.
        """
        if self.sasl_password is not None or self.sasl_password_file is None:
            return self.sasl_password
        try:
            return self.sasl_password_file.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"KAFKA_SASL_PASSWORD_FILE unreadable: {exc}") from exc

    def client_config(self) -> dict[str, Any]:
        """The librdkafka settings common to producers, consumers and admin clients.

        Raises:
            ConfigurationError: The password file cannot be read.
        """
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.password(),
            "ssl.ca.location": self.ssl_ca_location,
        }
        cfg.update({k: v for k, v in optional.items() if v is not None})
        return cfg
