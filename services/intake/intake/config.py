"""Intake settings (environment, prefix ``QBRIDGE_``; Kafka under ``KAFKA_``)."""

from __future__ import annotations

from pydantic import Field

from qbridge.bus import KafkaSettings
from qbridge.service.settings import (
    ProblemLimitsSettings,
    RequestBoundsSettings,
    ServiceSettings,
)
from qbridge.topics import DEAD_LETTERS, INTAKE_GROUP, JOBS_ACCEPTED, PROBLEM_REQUESTS


class IntakeSettings(ServiceSettings, ProblemLimitsSettings, RequestBoundsSettings):
    """Everything intake reads from its environment.

    Size limits and request bounds are the shared :class:`ProblemLimitsSettings` and
    :class:`RequestBoundsSettings` (the gateway validates with the same ones).

    Attributes:
        consumer_group: Kafka consumer group (``QBRIDGE_CONSUMER_GROUP``).
        requests_topic: Topic of problem requests (override only for tests/canaries).
        accepted_topic: Topic of accepted job envelopes.
        dlq_topic: Dead-letter topic.
        create_topics: Create missing topics at start (disable where ACLs forbid it).
        dedup_cache_size: Keys remembered to skip exact duplicates (0 disables).
        kafka: Kafka connection settings (``KAFKA_*``).
    """

    consumer_group: str = INTAKE_GROUP.name
    requests_topic: str = PROBLEM_REQUESTS.name
    accepted_topic: str = JOBS_ACCEPTED.name
    dlq_topic: str = DEAD_LETTERS.name
    create_topics: bool = True

    dedup_cache_size: int = Field(default=10_000, ge=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
