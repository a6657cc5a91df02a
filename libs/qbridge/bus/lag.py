"""Consumer-group lag, read from Kafka: high watermark minus committed offset per partition."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from qbridge.bus.consumer import committed_offset
from qbridge.bus.settings import KafkaSettings
from qbridge.errors import BusError


@dataclass(frozen=True)
class PartitionLag:
    """Lag of one partition.

    Attributes:
        topic: Topic name.
        partition: Partition number.
        committed: Committed offset of the group, ``None`` if it never committed.
        low: Low watermark (oldest retained offset).
        high: High watermark (next offset to be written).
        lag: Messages not yet committed by the group.
    """

    topic: str
    partition: int
    committed: int | None
    low: int
    high: int
    lag: int


def topic_partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    """The partition numbers of ``topic``, sorted.

    Raises:
        BusError: The topic does not exist (or the broker reports an error for it).
        KafkaException: The broker did not answer in time.
    """
    md = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise BusError(f"topic {topic!r} not found: {md.error if md else 'missing'}")
    return sorted(md.partitions)


class LagReader:
    """Reads a consumer group's lag without joining the group."""

    def __init__(self, settings: KafkaSettings, group: str) -> None:
        """Create a reader for ``group``.

        Args:
            settings: Connection settings.
            group: The consumer group whose committed offsets are read.
        """
        self.group = group
        # A consumer that never subscribes does not join the group; it only reads offsets.
        self._consumer = Consumer(
            {
                **settings.client_config(),
                "group.id": group,
                "client.id": f"lag-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )

    def read(self, topics: Sequence[str], timeout: float = 10.0) -> list[PartitionLag]:
        """Lag per partition of ``topics``.

        A partition the group never committed counts everything retained as lag.

        Raises:
            BusError: The broker did not answer in time, or a topic does not exist.
        """
        try:
            partitions: list[TopicPartition] = []
            for topic in topics:
                partitions.extend(
                    TopicPartition(topic, p)
                    for p in topic_partitions(self._consumer, topic, timeout)
                )
            committed = self._consumer.committed(partitions, timeout=timeout)
            result = []
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=timeout, cached=False
                )
                done = committed_offset(tp.offset)
                lag = max(0, high - (done if done is not None else low))
                result.append(PartitionLag(tp.topic, tp.partition, done, low, high, lag))
            return result
        except KafkaException as exc:
            raise BusError(f"reading lag of {self.group}: {exc}") from exc

    def total(self, topics: Sequence[str], timeout: float = 10.0) -> int:
        """Sum of :meth:`read` over all partitions."""
        return sum(p.lag for p in self.read(topics, timeout))

    def close(self) -> None:
        """Release the client."""
        self._consumer.close()
