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
        batch_max_messages: Batch checkpointing: a consumer takes up to this many
            messages at once, handles them, flushes its producer ONCE, then stores every
            offset. Bigger batches amortize the flush round trip (acks=all) and, with a
            batch handler, one database transaction over more messages.
        batch_max_ms: Upper bound on the time spent collecting one batch. A batch is
            never waited for: after the first message only what is already fetched is
            added, so an idle pipeline adds no latency; this bounds collection while
            messages keep streaming in.
        producer_linger_ms: ``linger.ms``. Only messages that are not flushed wait for
            it (a consumer's batch flush sends at once), so it is kept small: low
            latency for lone messages, while under load batches fill up anyway.
        producer_batch_size: ``batch.size`` in bytes per partition batch (under load
            one request carries many messages).
        producer_compression: ``compression.type``; lz4 is cheap on CPU and shrinks
            Avro records with repeated strings.
        consumer_queued_min_messages: ``queued.min.messages`` (per partition): while a
            consumer's local queue holds at least this many messages (it is behind), its
            next fetch of that partition waits ``consumer_fetch_queue_backoff_ms``, so a
            backlog is fetched in fewer, larger responses. An idle consumer's queue is
            empty: its fetches never wait. (librdkafka's defaults, 100,000 and 1 s, keep
            fetching as long as anything arrives: under load every fetch returned a few
            messages. 20 and 5 ms: Kafka's CPU per job -15..20% and the pipeline's
            saturation throughput +15% in bench/bench_pipeline.py-style runs.)
        consumer_fetch_queue_backoff_ms: ``fetch.queue.backoff.ms``.
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
    batch_max_messages: int = Field(default=500, ge=1)
    batch_max_ms: int = Field(default=50, ge=0)
    producer_linger_ms: int = Field(default=2, ge=0)
    producer_batch_size: int = Field(default=1_000_000, ge=1)
    producer_compression: str = "lz4"
    consumer_queued_min_messages: int = Field(default=20, ge=1)
    consumer_fetch_queue_backoff_ms: int = Field(default=5, ge=0)

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
            # TCP_NODELAY, as Kafka's Java clients set it: with Nagle, a small request
            # behind an unacknowledged one waits for the peer's delayed ACK (~40 ms).
            "socket.nagle.disable": True,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.password(),
            "ssl.ca.location": self.ssl_ca_location,
        }
        cfg.update({k: v for k, v in optional.items() if v is not None})
        return cfg

    def consumer_config(self) -> dict[str, Any]:
        """The group consumers' fetch settings (see ``consumer_queued_min_messages``)."""
        return {
            "queued.min.messages": self.consumer_queued_min_messages,
            "fetch.queue.backoff.ms": self.consumer_fetch_queue_backoff_ms,
        }

    def producer_config(self) -> dict[str, Any]:
        """The producer's batching settings (linger, batch size, compression)."""
        return {
            "linger.ms": self.producer_linger_ms,
            "batch.size": self.producer_batch_size,
            "compression.type": self.producer_compression,
        }
