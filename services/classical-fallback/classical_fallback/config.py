"""classical-fallback settings (environment, prefix ``QBRIDGE_``; Kafka under ``KAFKA_``)."""

from __future__ import annotations

import os

from pydantic import Field

from qbridge.bus import KafkaSettings
from qbridge.executor.worker import WorkerSettings
from qbridge.service import ServiceSettings
from qbridge.solvers.classical import CpSatSettings
from qbridge.solvers.exact import MAX_EXACT_VARIABLES
from qbridge.topics import CLASSICAL_FALLBACK_GROUP, DEAD_LETTERS, SOLVER_OUTCOMES, WORK_CLASSICAL

_CPSAT = CpSatSettings()


class ClassicalSettings(ServiceSettings):
    """Everything classical-fallback reads from its environment.

    Attributes:
        consumer_group: Kafka consumer group (``QBRIDGE_CONSUMER_GROUP``).
        work_topic: Topic of classical work items (override only for tests/canaries).
        outcomes_topic: Topic of solver outcomes.
        dlq_topic: Dead-letter topic (only undecodable work items end there).
        create_topics: Create missing topics at start (disable where ACLs forbid it).
        backends: Values of the work item's ``backend`` this executor serves; other
            values are answered with a ``backend_unavailable`` error outcome.
        cpsat_num_workers: CP-SAT search workers (1 is deterministic).
        cpsat_linearization_level: CP-SAT LP strength.
        cpsat_deterministic_time_per_s: Deterministic-time limit per budget second
            (reproducible stopping points); unset for none.
        cpsat_warm_start: Run the heuristic warm start.
        min_time_ms: Work with less time left is not started (``over_budget``).
        started_delay_ms: A solve announces its start (the job's ``running``) only once
            it has run this long; quicker solves skip ``running`` (0: always announce).
        concurrency: Work items solved at the same time (default: the CPU cores).
        exact_max_variables: Binary problems up to this size are solved exactly
            in-process (numpy enumeration) before CP-SAT; 0 disables it.
        kafka: Kafka connection settings (``KAFKA_*``).
    """

    consumer_group: str = CLASSICAL_FALLBACK_GROUP.name
    work_topic: str = WORK_CLASSICAL.name
    outcomes_topic: str = SOLVER_OUTCOMES.name
    dlq_topic: str = DEAD_LETTERS.name
    create_topics: bool = True
    backends: list[str] = ["ortools", "cp-sat"]

    cpsat_num_workers: int = Field(default=_CPSAT.num_workers, ge=1)
    cpsat_linearization_level: int = Field(default=_CPSAT.linearization_level, ge=0, le=2)
    cpsat_deterministic_time_per_s: float | None = _CPSAT.deterministic_time_per_s
    cpsat_warm_start: bool = _CPSAT.warm_start
    min_time_ms: int = Field(default=50, ge=0)
    started_delay_ms: int = Field(default=20, ge=0)
    concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    exact_max_variables: int = Field(default=MAX_EXACT_VARIABLES, ge=0, le=24)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    def cpsat(self) -> CpSatSettings:
        """Settings of the CP-SAT solver."""
        return CpSatSettings(
            num_workers=self.cpsat_num_workers,
            linearization_level=self.cpsat_linearization_level,
            deterministic_time_per_s=self.cpsat_deterministic_time_per_s,
            warm_start=self.cpsat_warm_start,
        )

    def worker(self) -> WorkerSettings:
        """Budget rules of the shared worker."""
        return WorkerSettings(
            min_time_s=self.min_time_ms / 1000.0,
            exact_max_variables=self.exact_max_variables,
            started_delay_s=self.started_delay_ms / 1000.0,
        )
