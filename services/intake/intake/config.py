"""Intake settings (environment, prefix ``QBRIDGE_``; Kafka under ``KAFKA_``)."""

from __future__ import annotations

from pydantic import Field

from intake.accept import RequestBounds
from qbridge.bus import KafkaSettings
from qbridge.service.settings import ProblemLimitsSettings, ServiceSettings
from qbridge.topics import DEAD_LETTERS, INTAKE_GROUP, JOBS_ACCEPTED, PROBLEM_REQUESTS

_BOUNDS = RequestBounds()


class IntakeSettings(ServiceSettings, ProblemLimitsSettings):
    """Everything intake reads from its environment.

    Attributes:
        consumer_group: Kafka consumer group (``QBRIDGE_CONSUMER_GROUP``).
        requests_topic: Topic of problem requests (override only for tests/canaries).
        accepted_topic: Topic of accepted job envelopes.
        dlq_topic: Dead-letter topic.
        create_topics: Create missing topics at start (disable where ACLs forbid it).
        min_timeout_ms: Shortest accepted ``timeout_ms``.
        max_timeout_ms: Longest accepted ``timeout_ms``.
        max_shot_budget: Largest accepted ``shot_budget`` (0 = no limit).
        max_tags: Most tags per request.
        dedup_cache_size: Keys remembered to skip exact duplicates (0 disables).
        kafka: Kafka connection settings (``KAFKA_*``).
    """

    consumer_group: str = INTAKE_GROUP.name
    requests_topic: str = PROBLEM_REQUESTS.name
    accepted_topic: str = JOBS_ACCEPTED.name
    dlq_topic: str = DEAD_LETTERS.name
    create_topics: bool = True

    min_timeout_ms: int = Field(default=_BOUNDS.min_timeout_ms, ge=1)
    max_timeout_ms: int = Field(default=_BOUNDS.max_timeout_ms, ge=1)
    max_shot_budget: int = Field(default=_BOUNDS.max_shot_budget or 0, ge=0)
    max_tags: int = Field(default=_BOUNDS.max_tags, ge=0)

    dedup_cache_size: int = Field(default=10_000, ge=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    def bounds(self) -> RequestBounds:
        """The bounds on a request's own fields."""
        return RequestBounds(
            min_timeout_ms=self.min_timeout_ms,
            max_timeout_ms=self.max_timeout_ms,
            max_shot_budget=self.max_shot_budget or None,
            max_tags=self.max_tags,
        )
