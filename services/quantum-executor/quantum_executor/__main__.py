"""`python -m quantum_executor`: wire settings, Kafka clients and the app; serve to SIGTERM."""

from __future__ import annotations

import sys

from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, ensure_topics
from qbridge.contracts import AvroCodec, default_registry
from qbridge.service import ServiceRuntime
from qbridge.topics import DEAD_LETTERS, SOLVER_OUTCOMES, WORK_QUANTUM, TopicSpec
from quantum_executor.app import SERVICE, QuantumApp
from quantum_executor.config import QuantumSettings
from quantum_executor.solvers import QuantumSolvers


def main() -> int:
    """Run the quantum executor; returns the exit code."""
    settings = QuantumSettings()
    runtime = ServiceRuntime(SERVICE, settings)
    kafka = settings.kafka
    work = TopicSpec(settings.work_topic, WORK_QUANTUM.record, WORK_QUANTUM.partitions)
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
    solvers = QuantumSolvers(
        settings.backends,
        settings.qaoa(),
        backend_options=settings.backend_options,
        faults=settings.faults(),
    )
    app = QuantumApp(
        consumer,
        producer,
        outcomes,
        solvers,
        worker=settings.worker(),
        prewarm=[b for b in settings.prewarm_backends if b in settings.backends],
    )
    return runtime.serve(app.run, stop=app.stop, ready=app.ready, on_exit=app.close)


if __name__ == "__main__":
    sys.exit(main())
