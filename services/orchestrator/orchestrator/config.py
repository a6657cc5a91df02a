"""Orchestrator settings (environment prefix ``QBRIDGE_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qbridge.service import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    """Routing, budgets, retries, timers and backpressure thresholds.

    Lag thresholds are in messages of the executors' consumer groups; the KEDA
    scalers in deploy/k8s scale the executors well below them, so degradation
    only happens when scaling cannot keep up.
    """

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/qbridge", validation_alias="DATABASE_URL"
    )
    create_topics: bool = True
    """Create missing topics at start (disable where ACLs forbid it)."""
    startup_db_wait_s: float = 300.0
    """How long start-up waits for an unreachable PostgreSQL before giving up."""
    tick_max_backoff_s: float = 10.0
    """Cap of the backoff between retries of failing periodic work (timers, outbox)."""
    default_backend: str = "aer_statevector"
    backend_max_qubits: dict[str, int] = {
        "aer_statevector": 24,
        "aer_mps": 48,
        "fake_noisy": 5,
        "runtime_local": 5,
    }
    tenant_backends: dict[str, str] = {}
    """Tenants promoted to another backend (e.g. a real provider): configuration, not code."""
    tenant_shot_quota: dict[str, int] = {}
    """Total shots a tenant may use on quantum routes; missing = unlimited."""
    tenant_cost_quota: dict[str, float] = {}
    """Total quantum cost units a tenant may use; missing = unlimited."""
    approval_tenants: list[str] = []
    """Tenants whose quantum attempts wait for a reviewer's approval."""
    approval_problem_types: list[str] = []
    """Problem types whose quantum attempts wait for approval."""
    approval_min_cost_units: float | None = None
    """Estimated cost units (qubits x shots x ``approval_cost_per_qubit_shot``) needing approval."""
    approval_premium_backends: list[str] = []
    """Backends whose use needs approval."""
    approval_cost_per_qubit_shot: float = 0.001
    approval_timeout_ms: int = 600_000
    """How long a job waits for a decision (capped at half of its remaining budget)."""
    approval_timeout_action: Literal["classical", "expire"] = "classical"
    """On timeout: answer classically (degraded) or expire the job."""
    approval_reject_action: Literal["classical", "fail"] = "classical"
    """On rejection: answer classically (degraded) or fail the job."""
    default_shots: int = 2048
    quantum_time_share: float = 0.6
    """Share of a job's timeout given to the quantum attempt before falling back."""
    finalize_grace_ms: int = 500
    degrade_quantum_lag: int = 20
    """Above this quantum-executor lag, new quantum work is routed classically."""
    pause_low_priority_lag: int = 200
    """Above this total executor lag, admission of low-priority jobs is deferred."""
    low_priority_below: int = 3
    defer_ms: int = 500
    max_transient_retries: int = 2
    retry_backoff_ms: int = 200
    breaker_failures: int = 3
    breaker_cooldown_ms: int = 30_000
    lag_poll_ms: int = 1000
    """How often executor lag is read while recent jobs' routing depends on it."""
    lag_idle_poll_ms: int = 10_000
    """How often it is read otherwise (only classical-only jobs of normal priority)."""
    timer_scan_ms: int = 100
    outbox_resend_ms: int = 2000
    outbox_mark_delay_ms: int = 200
    """How long delivered outbox rows may wait for the next batch's transaction to mark
    them sent before the idle tick marks them on its own (keep well under
    ``outbox_resend_ms``, or idle periods re-send them)."""
