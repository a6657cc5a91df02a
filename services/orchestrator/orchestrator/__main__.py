"""Run the orchestrator: ``python -m orchestrator``."""

from __future__ import annotations

import logging
import sys

from orchestrator.app import OrchestratorApp
from orchestrator.config import OrchestratorSettings
from orchestrator.store import Store
from qbridge import topics
from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, KafkaSettings
from qbridge.bus.admin import ensure_topics
from qbridge.bus.lag_monitor import LagMonitor
from qbridge.contracts import AvroCodec, default_registry
from qbridge.metrics import CONSUMER_LAG
from qbridge.service import ServiceRuntime

logger = logging.getLogger(__name__)


def main() -> int:
    """Wire settings, clients and the run loop."""
    settings = OrchestratorSettings()
    kafka = KafkaSettings()
    runtime = ServiceRuntime("orchestrator", settings)
    codec = AvroCodec(default_registry())
    if settings.create_topics:
        ensure_topics(kafka)
    store = Store(settings.database_url)
    store.open(timeout=settings.startup_db_wait_s)
    producer = BusProducer(kafka, codec, client_id="orchestrator")
    consumer = BusConsumer(
        kafka,
        topics.ORCHESTRATOR_GROUP.name,
        [topics.JOBS_ACCEPTED, topics.SOLVER_OUTCOMES, topics.APPROVALS],
        codec,
        DeadLetterPublisher(producer, "orchestrator"),
        producer=producer,
        on_exhausted="block",
    )
    lag = LagMonitor(
        kafka,
        (topics.QUANTUM_EXECUTOR_GROUP, topics.CLASSICAL_FALLBACK_GROUP),
        keep_stale=True,
        gauge=CONSUMER_LAG,
    )
    app = OrchestratorApp(settings, store, producer, codec, lag)

    def close() -> None:
        try:
            app.mark_delivered()
        except Exception:  # the outbox re-sends them: nothing is lost
            logger.warning("could not mark delivered outbox rows at shut-down", exc_info=True)
        consumer.close()
        producer.close()
        lag.close()
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
