"""Topic administration: create the pipeline's topics if they are missing."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from qbridge.bus.settings import KafkaSettings
from qbridge.errors import BusError
from qbridge.topics import ALL_TOPICS, TOPIC_MAX_MESSAGE_BYTES, TopicSpec

logger = logging.getLogger(__name__)


def ensure_topics(
    settings: KafkaSettings, specs: Sequence[TopicSpec] = ALL_TOPICS, timeout: float = 30.0
) -> list[str]:
    """Create missing topics with the partition counts the services assume.

    Returns:
        Names of the topics created (existing ones are left alone).

    Raises:
        BusError: Creation failed for another reason than 'already exists'.
    """
    admin = AdminClient(settings.client_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [s for s in specs if s.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=settings.replication_factor,
                config={
                    "retention.ms": str(s.retention_ms),
                    "min.insync.replicas": str(settings.min_insync_replicas),
                    "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
                },
            )
            for s in wanted
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BusError(f"creating topic {name}: {exc}") from exc
    logger.info("created topics: %s", ", ".join(created))
    return created
