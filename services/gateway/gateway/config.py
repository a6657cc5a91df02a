"""Gateway settings (environment, prefix ``QBRIDGE_``; Kafka under ``KAFKA_``; ``DATABASE_URL``)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from qbridge.bus import KafkaSettings
from qbridge.service.admission import AdmissionSettings
from qbridge.service.grpc_server import GrpcServerSettings
from qbridge.service.settings import (
    ProblemLimitsSettings,
    RequestBoundsSettings,
    ServiceSettings,
)
from qbridge.topics import MAX_REQUEST_BYTES


class GatewaySettings(
    ServiceSettings,
    ProblemLimitsSettings,
    RequestBoundsSettings,
    GrpcServerSettings,
    AdmissionSettings,
):
    """Everything the gateway reads from its environment.

    The gRPC listener (``QBRIDGE_GRPC_PORT``, TLS files...) is :class:`GrpcServerSettings`,
    the tenants' call rates and the Solve gate (``QBRIDGE_TENANT_RATES``,
    ``QBRIDGE_MAX_INFLIGHT_SOLVES``...) are :class:`AdmissionSettings`;
    each Solve and each WatchJob holds one of its ``grpc_workers``, and the default
    ``max_concurrent_rpcs`` leaves room for ``max_inflight_solves`` + ``max_watchers`` +
    short calls.

    Attributes:
        api_keys: API key -> tenant (``QBRIDGE_API_KEYS='{"key1": "tenantA"}'``).
        api_key_roles: API key -> roles (``QBRIDGE_API_KEY_ROLES='{"key1": ["approver"]}'``).
        premium_backends: Quantum backends only premium tenants may ask for.
        premium_tenants: Tenants allowed on premium backends.
        known_backends: Backends a request may name (others are INVALID_ARGUMENT).
        database_url: The results database (read only: jobs, transitions, solutions).
        db_pool_max: Connections to it at most.
        db_timeout_s: Wait for a pooled connection before answering UNAVAILABLE.
        create_topics: Create missing topics at start.
        default_deadline_ms: Solve deadline when neither the request nor the call has one.
        max_deadline_ms: Longest Solve deadline accepted.
        default_timeout_ms: Submit's job timeout when the request has none.
        min_job_timeout_ms: Shortest job timeout published (the lower bound of the
            request bounds; the others are intake's :class:`RequestBoundsSettings`).
        pipeline_reserve_share: Share of a Solve deadline kept between the job's own
            deadline and the caller's, for the final outcome to travel back.
        pipeline_reserve_min_ms: Lower bound of that reserve.
        pipeline_reserve_max_ms: Upper bound of that reserve.
        answer_reserve_ms: Solve stops waiting this long before the deadline (at most
            20% of it) to send the answer in time.
        answer_reserve_max_share: With the reserve learned from late-leaving answers
            (the p99 of how long after their planned moment recent deadline answers left)
            added, the reserve is at most this share of the deadline.
        answer_reserve_start_ms: The learned part of the reserve a fresh gateway assumes
            until it has measured 64 deadline answers (its first answers under load are
            the late ones it would otherwise learn from).
        local_workers: Workers computing the gateway's own classical answers.
        local_mode: ``process`` (worker processes: solver CPU never holds the gateway's
            GIL) or ``thread``.
        local_queue_limit: Pending local solves at most; beyond, only the instant
            heuristic answer is computed.
        local_max_budget_ms: Longest local run of the classical portfolio (the gateway's
            own answer); the rest of a longer deadline is not used locally.
        tenant_max_inflight: Solve calls in flight per tenant at most (0 = no limit).
        max_watchers: Concurrent WatchJob streams at most (all tenants).
        tenant_max_watchers: Concurrent WatchJob streams per tenant at most (0 = no limit).
        grpc_max_receive_bytes: Largest gRPC message received (RESOURCE_EXHAUSTED beyond,
            before it is buffered or parsed): twice the byte budget, since the protobuf
            or JSON form of a problem is larger than its Avro form.
        low_priority_below: Priorities below this are low.
        reject_low_priority_lag: Executor lag (messages) above which low-priority Solve
            and Submit calls are answered RESOURCE_EXHAUSTED.
        reject_submit_lag: Executor lag above which every Submit is RESOURCE_EXHAUSTED.
        lag_poll_ms: How often executor lag is read from Kafka.
        watch_unknown_timeout_s: A watched job that never reaches the store ends the
            stream with DEADLINE_EXCEEDED after this long without any event.
        recent_jobs: Jobs whose live events are kept in memory (fan-out and gap filling).
        limits: Size limits and the byte budget of one request as the pipeline carries
            it (``QBRIDGE_MAX_REQUEST_BYTES``: larger requests are INVALID_ARGUMENT "too
            large"), shared with intake (:class:`ProblemLimitsSettings`).
        kafka: Kafka connection settings (``KAFKA_*``).
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore", populate_by_name=True)

    api_keys: dict[str, str] = Field(default_factory=dict, repr=False)
    api_key_roles: dict[str, list[str]] = Field(default_factory=dict, repr=False)
    premium_backends: list[str] = ["ibm_runtime"]
    premium_tenants: list[str] = []
    known_backends: list[str] = [
        "aer_statevector",
        "aer_mps",
        "fake_noisy",
        "runtime_local",
        "ibm_runtime",
    ]

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/qbridge",
        validation_alias=AliasChoices("DATABASE_URL", "QBRIDGE_DATABASE_URL", "database_url"),
        repr=False,
    )
    db_pool_max: int = Field(default=8, ge=2)
    db_timeout_s: float = Field(default=2.0, gt=0)
    create_topics: bool = True

    default_deadline_ms: int = Field(default=10_000, ge=1)
    max_deadline_ms: int = Field(default=600_000, ge=1)
    default_timeout_ms: int = Field(default=30_000, ge=1)
    min_job_timeout_ms: int = Field(default=100, ge=1)
    pipeline_reserve_share: float = Field(default=0.1, ge=0, lt=1)
    pipeline_reserve_min_ms: int = Field(default=50, ge=0)
    pipeline_reserve_max_ms: int = Field(default=1000, ge=0)
    answer_reserve_ms: int = Field(default=40, ge=0)
    answer_reserve_max_share: float = Field(default=0.35, ge=0.0, le=0.9)
    answer_reserve_start_ms: float = Field(default=30.0, ge=0.0)

    local_workers: int = Field(default=2, ge=1)
    local_mode: Literal["process", "thread"] = "process"
    local_queue_limit: int = Field(default=32, ge=0)
    local_max_budget_ms: int = Field(default=60_000, ge=0)

    tenant_max_inflight: int = Field(default=32, ge=0)
    max_watchers: int = Field(default=64, ge=1)
    tenant_max_watchers: int = Field(default=16, ge=0)
    grpc_max_receive_bytes: int = Field(default=2 * MAX_REQUEST_BYTES, ge=1024)
    low_priority_below: int = Field(default=3, ge=0, le=10)
    reject_low_priority_lag: int = 200
    reject_submit_lag: int = 5_000
    lag_poll_ms: int = Field(default=1000, ge=50)
    watch_unknown_timeout_s: float = Field(default=60.0, gt=0)
    recent_jobs: int = Field(default=10_000, ge=100)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
