"""``python -m results_sink [serve|migrate|results|costs|replay]``: wiring only."""

from __future__ import annotations

import sys

from qbridge.bus import BusConsumer, BusProducer, DeadLetterPublisher, ensure_topics
from qbridge.contracts import AvroCodec, default_registry
from qbridge.dashboard import DashboardApp, KafkaLag
from qbridge.db.pool import make_pool
from qbridge.service import ServiceRuntime
from qbridge.topics import (
    APPROVALS,
    JOB_OUTCOMES,
    JOB_PROGRESS,
    JOB_STATUS,
    JOBS_ACCEPTED,
    SOLVER_OUTCOMES,
)
from results_sink import SERVICE_NAME
from results_sink.app import ResultsSinkApp
from results_sink.cli import build_parser, run_command
from results_sink.config import ResultsSinkSettings
from results_sink.migrate import migrate
from results_sink.store import ResultsStore

TOPICS = (JOBS_ACCEPTED, JOB_STATUS, SOLVER_OUTCOMES, JOB_OUTCOMES, APPROVALS, JOB_PROGRESS)


def serve(settings: ResultsSinkSettings) -> int:
    """Settings -> clients -> run loop, with graceful SIGTERM."""
    runtime = ServiceRuntime(SERVICE_NAME, settings)
    codec = AvroCodec(default_registry())
    if settings.create_topics:
        ensure_topics(settings.kafka)
    pool = make_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout_s=settings.db_timeout_s,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        reconnect_timeout_s=settings.db_reconnect_timeout_s,
        application_name="qbridge-results-sink",
    )
    producer = BusProducer(settings.kafka, codec, client_id=f"{SERVICE_NAME}-dlq")
    consumer = BusConsumer(
        settings.kafka,
        settings.consumer_group,
        TOPICS,
        codec,
        DeadLetterPublisher(producer, SERVICE_NAME),
        retry_backoff_s=settings.retry_backoff_s,
        max_backoff_s=settings.max_backoff_s,
        on_exhausted="block",  # a database outage blocks; nothing is skipped
    )
    app = ResultsSinkApp(
        ResultsStore(pool),
        consumer,
        migrate=(lambda: migrate(settings.database_url)) if settings.migrate_on_start else None,
    )

    # The web dashboard (/dashboard, /api/summary) on the same HTTP port as /metrics;
    # the lag of every consumer group is also exported as qbridge_consumer_lag_messages.
    lag = KafkaLag(settings.kafka)
    lag.start()
    dashboard = DashboardApp(pool.connection, lag=lag)

    def on_exit() -> None:
        consumer.close()
        producer.close()
        lag.close()
        pool.close()

    return runtime.serve(
        app.run, stop=app.stop, ready=app.ready, on_exit=on_exit, extra=dashboard.routes()
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.command in (None, "serve"):
        return serve(ResultsSinkSettings())
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
