"""Settings of the results sink (environment; ``DATABASE_URL`` plus ``QBRIDGE_*``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from qbridge.bus import KafkaSettings
from qbridge.service import ServiceSettings
from qbridge.topics import RESULTS_SINK_GROUP


class ResultsSinkSettings(ServiceSettings):
    """Everything the sink reads from its environment.

    Attributes:
        database_url: libpq URL of the results database (``DATABASE_URL``).
        db_pool_min: Connections kept open.
        db_pool_max: Upper bound of the pool (the consumer uses one, probes another).
        db_timeout_s: How long a store call waits for a pooled connection before the
            database counts as unavailable (the consumer then retries with backoff).
        db_connect_timeout_s: libpq ``connect_timeout``.
        db_statement_timeout_ms: Server-side ``statement_timeout`` per connection.
        db_reconnect_timeout_s: How long the pool keeps retrying (with doubling delays)
            one broken connection before starting afresh; bounds the time to notice a
            recovered database after a long outage.
        migrate_on_start: Apply pending migrations before consuming (advisory-locked,
            so several replicas may start at once).
        consumer_group: Kafka consumer group id.
        create_topics: Create missing topics at start (disable where ACLs forbid it).
        retry_backoff_s: First backoff after a failed write; doubles up to ``max_backoff_s``.
        max_backoff_s: Cap of the retry backoff during a database outage.
        kafka: Kafka connection settings (``KAFKA_*``).
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/qbridge",
        validation_alias=AliasChoices("DATABASE_URL", "QBRIDGE_DATABASE_URL", "database_url"),
        repr=False,
    )
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=4, ge=2)
    db_timeout_s: float = Field(default=5.0, gt=0)
    db_connect_timeout_s: int = Field(default=3, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_reconnect_timeout_s: float = Field(default=15.0, gt=0)
    migrate_on_start: bool = True
    consumer_group: str = RESULTS_SINK_GROUP.name
    create_topics: bool = True
    retry_backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=5.0, gt=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
