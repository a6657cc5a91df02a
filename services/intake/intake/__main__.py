"""``python -m intake``: wire settings, Kafka clients and the app, then serve until SIGTERM."""

from __future__ import annotations

import sys

from intake.app import SERVICE, IntakeApp
from intake.config import IntakeSettings
from intake.dedup import RecentlyAccepted
from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, ensure_topics
from qbridge.contracts import AvroCodec, default_registry
from qbridge.service import ServiceRuntime
from qbridge.topics import DEAD_LETTERS, JOBS_ACCEPTED, PROBLEM_REQUESTS, TopicSpec


def main() -> int:
    """Run the intake service; returns the exit code."""
    settings = IntakeSettings()
    runtime = ServiceRuntime(SERVICE, settings)
    kafka = settings.kafka
    requests = TopicSpec(
        settings.requests_topic, PROBLEM_REQUESTS.record, PROBLEM_REQUESTS.partitions
    )
    accepted = TopicSpec(settings.accepted_topic, JOBS_ACCEPTED.record, JOBS_ACCEPTED.partitions)
    dlq_topic = TopicSpec(
        settings.dlq_topic, DEAD_LETTERS.record, DEAD_LETTERS.partitions, DEAD_LETTERS.retention_ms
    )
    if settings.create_topics:
        ensure_topics(kafka, [requests, accepted, dlq_topic])

    # The request byte budget is checked before anything is parsed ("too large" -> DLQ).
    codec = AvroCodec(default_registry(), max_decode_bytes=settings.max_request_bytes)
    producer = BusProducer(kafka, codec, client_id=SERVICE)
    dlq = DeadLetterPublisher(producer, SERVICE, dlq_topic)
    consumer = BusConsumer(
        kafka, settings.consumer_group, [requests], codec, dlq, producer=producer
    )
    app = IntakeApp(
        consumer,
        producer,
        accepted,
        limits=settings.limits(),
        bounds=settings.bounds(),
        recent=RecentlyAccepted(settings.dedup_cache_size),
    )
    return runtime.serve(app.run, stop=app.stop, ready=app.ready, on_exit=app.close)


if __name__ == "__main__":
    sys.exit(main())
