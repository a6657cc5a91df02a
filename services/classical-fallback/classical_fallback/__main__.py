"""`python -m classical_fallback`: wire settings, Kafka clients and the app; serve to SIGTERM."""

from __future__ import annotations

import sys

from classical_fallback.app import SERVICE, ClassicalApp
from classical_fallback.config import ClassicalSettings
from classical_fallback.solvers import ClassicalSolvers
from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, ensure_topics
from qbridge.contracts import AvroCodec, default_registry
from qbridge.service import ServiceRuntime
from qbridge.topics import DEAD_LETTERS, SOLVER_OUTCOMES, WORK_CLASSICAL, TopicSpec


def main() -> int:
    """Run the classical-fallback service; returns the exit code."""
    settings = ClassicalSettings()
    runtime = ServiceRuntime(SERVICE, settings)
    kafka = settings.kafka
    work = TopicSpec(settings.work_topic, WORK_CLASSICAL.record, WORK_CLASSICAL.partitions)
    outcomes = TopicSpec(
        settings.outcomes_topic, SOLVER_OUTCOMES.record, SOLVER_OUTCOMES.partitions
    )
    dlq_topic = TopicSpec(
        settings.dlq_topic, DEAD_LETTERS.record, DEAD_LETTERS.partitions, DEAD_LETTERS.retention_ms
    )
    if settings.create_topics:
        ensure_topics(kafka, [work, outcomes, dlq_topic])

    codec = AvroCodec(default_registry())
    producer = BusProducer(kafka, codec, client_id=SERVICE)
    consumer = BusConsumer(
        kafka,
        settings.consumer_group,
        [work],
        codec,
        DeadLetterPublisher(producer, SERVICE, dlq_topic),
        producer=producer,
    )
    app = ClassicalApp(
        consumer,
        producer,
        outcomes,
        ClassicalSolvers(settings.backends, settings.cpsat()),
        worker=settings.worker(),
    )
    return runtime.serve(app.run, stop=app.stop, ready=app.ready, on_exit=app.close)


if __name__ == "__main__":
    sys.exit(main())
