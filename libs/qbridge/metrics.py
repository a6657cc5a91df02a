"""Prometheus metrics shared by the services (prefix ``qbridge_``, base units, ``_total``).

Label values are small, bounded sets (service, topic, stage, route, error class);
never job ids or tenants' free text.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

MESSAGES_CONSUMED = Counter(
    "qbridge_messages_consumed_total",
    "Messages taken from Kafka, by result (ok, dlq).",
    ["service", "topic", "result"],
)
CONSUMER_BATCH = Histogram(
    "qbridge_consumer_batch_messages",
    "Messages per consumer batch (handled with one producer flush and one offset store): "
    "1 at low load, larger while a backlog is worked off.",
    ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
DLQ_MESSAGES = Counter(
    "qbridge_dlq_messages_total",
    "Messages sent to the dead-letter topic, by error class.",
    ["service", "error_class"],
)
RETRIES = Counter(
    "qbridge_retries_total",
    "Retries of failed work, by error class.",
    ["service", "error_class"],
)
STAGE_DURATION = Histogram(
    "qbridge_stage_duration_seconds",
    "Time spent per processing stage (validate, route, queue, transpile, execute, ...).",
    ["service", "stage"],
    buckets=_SECONDS,
)
JOBS_FINAL = Counter(
    "qbridge_jobs_final_total",
    "Jobs that reached a final state, by status, route and problem type.",
    ["status", "route", "problem_type"],
)
FALLBACKS = Counter(
    "qbridge_fallbacks_total",
    "Jobs answered classically although quantum was wanted, by reason.",
    ["reason"],
)
CONSUMER_LAG = Gauge(
    "qbridge_consumer_lag_messages",
    "Consumer-group lag (high watermark minus committed offset), summed per topic.",
    ["group", "topic"],
)
BACKEND_AVAILABLE = Gauge(
    "qbridge_backend_available",
    "1 while the orchestrator sends work to a backend, 0 while its circuit breaker is open.",
    ["backend"],
)
TRANSPILE_CACHE = Counter(
    "qbridge_transpile_cache_requests_total",
    "Transpile cache lookups, by result (hit, miss).",
    ["result"],
)
COST_UNITS = Counter(
    "qbridge_cost_units_total",
    "Cost units charged, by route.",
    ["route"],
)
SOLVES = Counter(
    "qbridge_solver_solves_total",
    "Solver invocations, by route, backend and status (ok or the error class).",
    ["route", "backend", "status"],
)
QUANTUM_CLASSICAL_GAP = Histogram(
    "qbridge_quantum_classical_gap_ratio",
    "Race mode: relative objective gap of the quantum answer to the classical one"
    " (positive: quantum worse; negative: quantum better).",
    ["problem_type"],
    buckets=(-0.5, -0.1, -0.02, -0.001, 0.001, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)
