"""Run the orchestrator: ``python -m orchestrator``."""

from __future__ import annotations

import sys

from orchestrator.app import OrchestratorApp
from orchestrator.config import OrchestratorSettings
from orchestrator.store import Store
from qbridge import topics
from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, KafkaSettings, LagReader
from qbridge.bus.admin import ensure_topics
from qbridge.contracts import AvroCodec, default_registry
from qbridge.service import ServiceRuntime


def main() -> int:
    """Wire settings, clients and the run loop."""
    settings = OrchestratorSettings()
    kafka = KafkaSettings()
    runtime = ServiceRuntime("orchestrator", settings)
    codec = AvroCodec(default_registry())
    if settings.create_topics:
        ensure_topics(kafka)
    store = Store(settings.database_url)
    store.open()
    producer = BusProducer(kafka, codec, client_id="orchestrator")
    consumer = BusConsumer(
        kafka,
        topics.ORCHESTRATOR_GROUP.name,
        [topics.JOBS_ACCEPTED, topics.SOLVER_OUTCOMES],
        codec,
        DeadLetterPublisher(producer, "orchestrator"),
        producer=producer,
        on_exhausted="block",
    )
    lag_readers = {
        g.name: LagReader(kafka, g.name)
        for g in (topics.QUANTUM_EXECUTOR_GROUP, topics.CLASSICAL_FALLBACK_GROUP)
    }
    app = OrchestratorApp(settings, store, producer, codec, lag_readers)

    def close() -> None:
        consumer.close()
        producer.close()
        for r in lag_readers.values():
            r.close()
        store.close()

    def ready() -> tuple[bool, str]:
        ok = store.healthy()
        return ok, "ok" if ok else "database unreachable"

    return runtime.serve(
        lambda: consumer.run(app.handle, on_idle=app.tick, batch_handler=app.handle_batch),
        stop=consumer.stop,
        ready=ready,
        on_exit=close,
    )


if __name__ == "__main__":
    sys.exit(main())
