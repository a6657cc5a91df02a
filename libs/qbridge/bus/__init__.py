"""The event bus: confluent-kafka wrapped once, with safe defaults."""

from qbridge.bus.admin import ensure_topics
from qbridge.bus.consumer import BatchHandler, BusConsumer, Handler, Record
from qbridge.bus.dlq import DeadLetterPublisher
from qbridge.bus.lag import LagReader, PartitionLag
from qbridge.bus.producer import BusProducer
from qbridge.bus.settings import KafkaSettings

__all__ = [
    "BatchHandler",
    "BusConsumer",
    "BusProducer",
    "DeadLetterPublisher",
    "Handler",
    "KafkaSettings",
    "LagReader",
    "PartitionLag",
    "Record",
    "ensure_topics",
]
