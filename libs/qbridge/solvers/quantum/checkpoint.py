"""Durable checkpoints of a variational (QAOA) optimizer loop, for resume after a crash.

After every optimizer iteration the loop saves its position: the angles it last
evaluated, the best angles and value so far, the iteration, and its counters. The
loop's randomness is derived from ``(seed, backend calls so far)``, so the call
counter *is* its RNG state. An executor killed mid-run finds the checkpoint on
redelivery (same job id and attempt) and continues from the next iteration instead
of repeating the ones already paid for.

Stores: :class:`MemoryCheckpointStore` (tests, one process) and
:class:`PostgresCheckpointStore` (durable; one row per job id and attempt).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopCheckpoint:
    """Where an optimizer loop was after an iteration.

    Attributes:
        iteration: Optimizer iterations done (the initial batch is iteration 0).
        maxiter: The loop's iteration cap (progress is ``iteration`` of ``maxiter``).
        angles: The angles evaluated last.
        best_angles: The best angles so far.
        best_value: Their (scaled) energy.
        calls: Backend calls so far (with the seed, the loop's RNG state).
        parameter_sets: Parameter sets evaluated so far.
        shots_used: Shots spent so far.
        exact_sets: Exactly evaluated parameter sets so far.
        single_eval_s: Longest single evaluation seen (the deadline estimate).
    """

    iteration: int
    maxiter: int
    angles: list[float]
    best_angles: list[float]
    best_value: float
    calls: int
    parameter_sets: int
    shots_used: int
    exact_sets: int
    single_eval_s: float

    def to_json(self) -> str:
        """JSON text for storage."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoopCheckpoint:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


class CheckpointStore(Protocol):
    """Where checkpoints live, keyed by ``job_id:attempt``."""

    def load(self, key: str) -> LoopCheckpoint | None:
        """The last checkpoint saved under ``key``, if any."""
        ...

    def save(self, key: str, checkpoint: LoopCheckpoint) -> None:
        """Replace the checkpoint under ``key`` (durably, before returning)."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key`` (the run finished)."""
        ...


class MemoryCheckpointStore:
    """Checkpoints in a dict (tests; does not survive the process)."""

    def __init__(self) -> None:
        """An empty store."""
        self.data: dict[str, LoopCheckpoint] = {}
        self.saves = 0

    def load(self, key: str) -> LoopCheckpoint | None:
        """See :class:`CheckpointStore`."""
        return self.data.get(key)

    def save(self, key: str, checkpoint: LoopCheckpoint) -> None:
        """See :class:`CheckpointStore`."""
        self.data[key] = checkpoint
        self.saves += 1

    def delete(self, key: str) -> None:
        """See :class:`CheckpointStore`."""
        self.data.pop(key, None)


_DDL = """
CREATE TABLE IF NOT EXISTS qaoa_checkpoints (
    key        text        PRIMARY KEY,
    iteration  integer     NOT NULL,
    maxiter    integer     NOT NULL,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


class PostgresCheckpointStore:
    """Checkpoints in PostgreSQL (table ``qaoa_checkpoints``, created when missing).

    Each save is one autocommitted upsert, durable when it returns.
    """

    def __init__(self, dsn: str) -> None:
        """Connect to ``dsn`` and create the table if needed.

        Raises:
            psycopg.OperationalError: The database is unreachable.
        """
        import psycopg  # only executors with a checkpoint DSN need the driver

        self._conn = psycopg.connect(dsn, autocommit=True)
        self._conn.execute(_DDL)

    def load(self, key: str) -> LoopCheckpoint | None:
        """See :class:`CheckpointStore`."""
        row = self._conn.execute(
            "SELECT state::text FROM qaoa_checkpoints WHERE key = %s", (key,)
        ).fetchone()
        return None if row is None else LoopCheckpoint.from_json(row[0])

    def save(self, key: str, checkpoint: LoopCheckpoint) -> None:
        """See :class:`CheckpointStore`."""
        self._conn.execute(
            "INSERT INTO qaoa_checkpoints (key, iteration, maxiter, state) "
            "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (key) DO UPDATE SET "
            "iteration = EXCLUDED.iteration, maxiter = EXCLUDED.maxiter, "
            "state = EXCLUDED.state, updated_at = now()",
            (key, checkpoint.iteration, checkpoint.maxiter, checkpoint.to_json()),
        )

    def delete(self, key: str) -> None:
        """See :class:`CheckpointStore`."""
        self._conn.execute("DELETE FROM qaoa_checkpoints WHERE key = %s", (key,))

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
