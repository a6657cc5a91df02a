"""quantum-executor settings (environment, prefix ``QBRIDGE_``; Kafka under ``KAFKA_``)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from qbridge.bus import KafkaSettings
from qbridge.executor.progress import ProgressSettings
from qbridge.executor.worker import WorkerSettings
from qbridge.service import ServiceSettings
from qbridge.solvers.quantum import QaoaSettings
from qbridge.solvers.quantum.mitigation import ZneSettings
from qbridge.topics import (
    DEAD_LETTERS,
    JOB_PROGRESS,
    QUANTUM_EXECUTOR_GROUP,
    SOLVER_OUTCOMES,
    WORK_QUANTUM,
    TopicSpec,
)
from quantum_executor.solvers import FaultInjection

_QAOA = QaoaSettings()


class QuantumSettings(ServiceSettings):
    """Everything the quantum executor reads from its environment.

    Attributes:
        consumer_group: Kafka consumer group (``QBRIDGE_CONSUMER_GROUP``).
        work_topic: Topic of quantum work items (override only for tests/canaries).
        outcomes_topic: Topic of solver outcomes.
        dlq_topic: Dead-letter topic (only undecodable work items end there).
        create_topics: Create missing topics at start (disable where ACLs forbid it).
        backends: Backend names served (JSON list). A real provider (``ibm_runtime``)
            is enabled by adding it here with its options: configuration, not code.
        backend_options: ``make_backend`` options per backend (JSON object), e.g.
            ``{"fake_noisy": {"device": "FakeKolkataV2"}, "aer_statevector":
            {"optimization_level": 2}}``.
        prewarm_backends: Built (and exercised with a tiny solve) before consuming.
        qaoa_p: QAOA layers.
        qaoa_maxiter: Optimizer iterations at most.
        qaoa_optimizer: ``COBYLA``, ``Nelder-Mead``, ``Powell`` or ``none``.
        qaoa_initial_candidates: Starting angle sets evaluated in one batch.
        qaoa_eval_shots: Shots per parameter set on shot-based backends.
        qaoa_zne_scale_factors: Zero-noise extrapolation on shot-based backends with
            these odd scale factors (JSON list, e.g. ``[1, 3, 5]``); empty: off.
        qaoa_zne_extrapolation: ``richardson`` or ``linear``.
        quantum_fail_mode: Failure injection: ``unavailable``, ``transient`` or ``slow``.
        quantum_fail_on: Which backend calls fail (``estimate``, ``sample``, ``any``).
        quantum_fail_after: Calls that succeed before failures start.
        quantum_fail_times: Failures before recovering (unset: forever).
        quantum_fail_slow_s: Delay per call in ``slow`` mode.
        quantum_fail_backends: Backends affected (JSON list; empty: all).
        min_time_ms: Work with less time left is not started (``over_budget``).
        started_delay_ms: A solve announces its start (the job's ``running``) only once
            it has run this long; quicker solves skip ``running`` (0: always announce).
        concurrency: Work items solved at the same time (default: the CPU cores).
        default_shots: Shots when a work item says 0.
        checkpoint_dsn: PostgreSQL for per-iteration QAOA checkpoints, so a
            redelivered work item resumes its optimizer loop (unset: no checkpoints).
        progress_enabled: Publish throttled progress of QAOA runs (iteration, best
            energy, resume point, backend calls) for GetJob.
        progress_topic: Topic of the progress events.
        progress_interval_ms: At most one progress event per run per this many ms
            while optimizing (0: every iteration; first, last and failed always sent).
        cross_job_batching: Solve compatible QAOA work items of a consumer batch
            together, one backend call per optimizer step for all of them (see
            ``qbridge.solvers.quantum.batching`` for what "compatible" means). On by
            default; grouped items have budgets of one class (within a factor of
            two) and each keeps its own budget inside the group; SIGTERM interrupts
            a group (its unfinished items are redelivered). ``false``: every item
            runs its own QAOA loop.
        cross_job_batch_max: Items solved together at most.
        batch_template_max_qubits: On exact simulators, batched items of up to this
            many qubits share the dense template circuit whatever their graph;
            larger ones batch only with the same sparsity pattern.
        kafka: Kafka connection settings (``KAFKA_*``).
    """

    consumer_group: str = QUANTUM_EXECUTOR_GROUP.name
    work_topic: str = WORK_QUANTUM.name
    outcomes_topic: str = SOLVER_OUTCOMES.name
    dlq_topic: str = DEAD_LETTERS.name
    create_topics: bool = True

    backends: list[str] = ["aer_statevector", "aer_mps", "fake_noisy", "runtime_local"]
    backend_options: dict[str, dict[str, Any]] = {}
    prewarm_backends: list[str] = ["aer_statevector"]

    qaoa_p: int = Field(default=_QAOA.p, ge=1)
    qaoa_maxiter: int = Field(default=_QAOA.maxiter, ge=0)
    qaoa_optimizer: str = _QAOA.optimizer
    qaoa_initial_candidates: int = Field(default=_QAOA.initial_candidates, ge=1)
    qaoa_eval_shots: int = Field(default=_QAOA.eval_shots, ge=1)
    qaoa_zne_scale_factors: list[int] = []
    qaoa_zne_extrapolation: str = "richardson"

    quantum_fail_mode: Literal["unavailable", "transient", "slow"] | None = None
    quantum_fail_on: Literal["estimate", "sample", "any"] = "any"
    quantum_fail_after: int = Field(default=0, ge=0)
    quantum_fail_times: int | None = Field(default=None, ge=0)
    quantum_fail_slow_s: float = Field(default=2.0, ge=0)
    quantum_fail_backends: list[str] = []

    min_time_ms: int = Field(default=50, ge=0)
    started_delay_ms: int = Field(default=20, ge=0)
    concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    default_shots: int = Field(default=2048, ge=1)
    checkpoint_dsn: str | None = Field(default=None, repr=False)
    """PostgreSQL DSN for QAOA checkpoints (``QBRIDGE_CHECKPOINT_DSN``); unset: none."""
    progress_enabled: bool = True
    progress_topic: str = JOB_PROGRESS.name
    progress_interval_ms: int = Field(default=1000, ge=0)

    cross_job_batching: bool = True
    cross_job_batch_max: int = Field(default=32, ge=2)
    batch_template_max_qubits: int = Field(default=12, ge=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @field_validator("quantum_fail_mode", "quantum_fail_times", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "off"):
            return None
        return value

    def qaoa(self) -> QaoaSettings:
        """QAOA settings."""
        return QaoaSettings(
            p=self.qaoa_p,
            optimizer=self.qaoa_optimizer,
            maxiter=self.qaoa_maxiter,
            initial_candidates=self.qaoa_initial_candidates,
            eval_shots=self.qaoa_eval_shots,
            zne=ZneSettings(tuple(self.qaoa_zne_scale_factors), self.qaoa_zne_extrapolation)
            if self.qaoa_zne_scale_factors
            else None,
        )

    def faults(self) -> FaultInjection:
        """Failure injection settings."""
        return FaultInjection(
            mode=self.quantum_fail_mode,
            on=self.quantum_fail_on,
            after=self.quantum_fail_after,
            times=self.quantum_fail_times,
            slow_s=self.quantum_fail_slow_s,
            backends=frozenset(self.quantum_fail_backends),
        )

    def progress(self) -> ProgressSettings:
        """Progress throttling."""
        return ProgressSettings(interval_s=self.progress_interval_ms / 1000.0)

    def progress_spec(self) -> TopicSpec:
        """The progress topic (its name may be overridden)."""
        return TopicSpec(
            self.progress_topic,
            JOB_PROGRESS.record,
            JOB_PROGRESS.partitions,
            JOB_PROGRESS.retention_ms,
        )

    def group_max(self) -> int:
        """Largest group of compatible items solved together (0: batching off)."""
        return self.cross_job_batch_max if self.cross_job_batching else 0

    def worker(self) -> WorkerSettings:
        """Budget rules of the shared worker."""
        return WorkerSettings(
            min_time_s=self.min_time_ms / 1000.0,
            default_shots=self.default_shots,
            started_delay_s=self.started_delay_ms / 1000.0,
        )
