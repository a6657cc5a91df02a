"""Read-only access to the results database (tables owned and migrated by results-sink).

The gateway's GetJob, ListJobs and WatchJob history, the dashboard's recent jobs and
results-sink's ``results`` command read here. Database errors are translated into
:class:`~qbridge.errors.StoreUnavailableError` (the gateway answers UNAVAILABLE).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from qbridge.db.errors import translated
from qbridge.db.pool import make_pool

_JOB = """
SELECT j.job_id, j.tenant, j.problem_type, j.status, j.route, j.idempotency_key,
       j.correlation_id, j.input_fingerprint, j.priority, j.fallback_policy, j.timeout_ms,
       j.num_variables, j.num_qubits, j.tags, j.created_at, j.accepted_at, j.deadline_at,
       j.final_at, j.envelope_received, j.status_seq,
       s.job_id IS NOT NULL AS has_outcome, s.status AS o_status, s.reason AS o_reason,
       s.route AS o_route, s.assignment AS o_assignment, s.objective AS o_objective,
       s.feasible AS o_feasible, s.frequency AS o_frequency, s.proven_optimal, s.bound,
       s.gap, s.expected_objective, s.confidence, s.quantum_classical_gap,
       s.attempts AS o_attempts, s.provenance AS o_provenance, s.completed_at AS o_completed_at,
       p.phase AS p_phase, p.attempt AS p_attempt, p.backend AS p_backend,
       p.iteration AS p_iteration, p.max_iterations AS p_max_iterations,
       p.best_energy AS p_best_energy, p.resumed_from_iteration AS p_resumed_from_iteration,
       p.backend_calls AS p_backend_calls, p.shots_used AS p_shots_used,
       p.run_started_at AS p_run_started_at, p.emitted_at AS p_emitted_at
FROM jobs j LEFT JOIN solutions s USING (job_id) LEFT JOIN job_progress p USING (job_id)
WHERE j.job_id = %s
"""

_CANDIDATES = """
SELECT assignment, objective, feasible, frequency FROM candidates
WHERE job_id = %s ORDER BY rank
"""

_TRANSITIONS = """
SELECT job_id, seq, from_status, to_status, reason, attempt, route, backend,
       correlation_id, at
FROM status_transitions WHERE job_id = %s AND seq > %s ORDER BY seq
"""

_ATTEMPTS = """
SELECT work_id, attempt, route, backend, solver, status, error_class, error_message,
       objective, feasible, duration_ms, cost_units, started_at, finished_at
FROM attempts WHERE job_id = %s ORDER BY attempt, route, work_id
"""

_LIST = """
SELECT j.job_id, j.problem_type, j.status, COALESCE(s.route, j.route) AS route,
       s.reason, s.objective, s.feasible, j.correlation_id, j.final_at,
       COALESCE(j.created_at, j.first_seen_at) AS sort_at
FROM jobs j LEFT JOIN solutions s USING (job_id)
WHERE j.tenant = %(tenant)s
  AND (%(statuses)s::text[] IS NULL OR j.status = ANY(%(statuses)s))
  AND (%(problem_type)s::text IS NULL OR j.problem_type = %(problem_type)s)
  AND (%(after_at)s::timestamptz IS NULL
       OR (COALESCE(j.created_at, j.first_seen_at), j.job_id) < (%(after_at)s, %(after_id)s))
ORDER BY sort_at DESC, j.job_id DESC
LIMIT %(limit)s
"""


_RECENT = """
SELECT j.job_id, j.tenant, j.problem_type, COALESCE(s.status, j.status, 'pending') AS status,
       COALESCE(s.route, j.route) AS route, s.backend, s.solver, s.objective, s.feasible,
       s.reason, s.attempts,
       (EXTRACT(EPOCH FROM (s.completed_at - COALESCE(j.accepted_at, j.created_at))) * 1000)
           AS latency_ms,
       s.quantum_classical_gap, COALESCE(j.created_at, j.first_seen_at) AS created_at,
       s.completed_at, p.phase AS progress_phase, p.iteration AS progress_iteration,
       p.max_iterations AS progress_max_iterations, p.best_energy AS progress_best_energy,
       p.resumed_from_iteration AS progress_resumed_from_iteration,
       p.backend_calls AS progress_backend_calls
FROM jobs j LEFT JOIN solutions s USING (job_id) LEFT JOIN job_progress p USING (job_id)
WHERE (%(tenant)s::text IS NULL OR j.tenant = %(tenant)s)
ORDER BY COALESCE(s.completed_at, j.created_at, j.first_seen_at) DESC, j.job_id
LIMIT %(limit)s
"""


def recent_results(
    cur: psycopg.Cursor[dict[str, Any]], limit: int = 20, tenant: str | None = None
) -> list[dict[str, Any]]:
    """The latest jobs with their final result, newest first, on an open cursor.

    Takes a cursor so a caller can read it inside its own transaction (the dashboard
    reads every panel from one snapshot).

    Args:
        cur: A cursor with a dict row factory.
        limit: Rows at most.
        tenant: Only this tenant's jobs (None: every tenant).

    Returns:
        Rows with job_id, tenant, problem_type, status (``pending`` before any), route,
        backend, solver, objective, feasible, reason, attempts, latency_ms,
        quantum_classical_gap, created_at and completed_at, and the latest progress of a
        variational run (``progress_*``: phase, iteration, max_iterations, best_energy,
        resumed_from_iteration, backend_calls; None without one).
    """
    cur.execute(_RECENT, {"limit": limit, "tenant": tenant})
    return cur.fetchall()


@dataclass(frozen=True)
class StoredJob:
    """A job as stored: its row, its final outcome (JobOutcome-shaped) if any.

    The row also carries the latest progress of the job's variational run, if any was
    reported, in the ``p_``-prefixed columns (``p_phase`` is None without one).
    """

    row: dict[str, Any]
    outcome: dict[str, Any] | None

    @property
    def tenant(self) -> str | None:
        """Owner (None for a placeholder row not yet filled by the envelope)."""
        value = self.row.get("tenant")
        return str(value) if value is not None else None


class JobReader:
    """Queries the results tables (read only)."""

    def __init__(self, pool: ConnectionPool) -> None:
        """Use connections of ``pool`` (owned by the caller)."""
        self.pool = pool

    @classmethod
    def connect(
        cls,
        database_url: str,
        *,
        max_size: int = 8,
        timeout_s: float = 2.0,
        application_name: str = "qbridge-gateway",
    ) -> JobReader:
        """A reader with its own pool (opens in the background: a down database is not fatal).

        Args:
            database_url: libpq URL of the results database.
            max_size: Connections at most.
            timeout_s: Wait for a free connection before StoreUnavailableError.
            application_name: Shown in ``pg_stat_activity``.
        """
        pool = make_pool(
            database_url,
            min_size=1,
            max_size=max_size,
            timeout_s=timeout_s,
            statement_timeout_ms=10_000,
            application_name=application_name,
        )
        return cls(pool)

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with (
            translated(),
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            yield cur

    def ping(self) -> None:
        """Round-trip (raises StoreUnavailableError)."""
        with self._cursor() as cur:
            cur.execute("SELECT 1")

    def job(self, job_id: str) -> StoredJob | None:
        """The job and its final outcome, or None if the store has never heard of it."""
        with self._cursor() as cur:
            cur.execute(_JOB, (job_id,))
            row = cur.fetchone()
            if row is None:
                return None
            outcome = None
            if row["has_outcome"]:
                cur.execute(_CANDIDATES, (job_id,))
                outcome = _outcome(row, cur.fetchall())
        return StoredJob(row, outcome)

    def transitions(self, job_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """The job's stored transitions with ``seq > after_seq``, in order."""
        with self._cursor() as cur:
            cur.execute(_TRANSITIONS, (job_id, after_seq))
            return cur.fetchall()

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's attempts."""
        with self._cursor() as cur:
            cur.execute(_ATTEMPTS, (job_id,))
            return cur.fetchall()

    def recent(self, limit: int = 20, tenant: str | None = None) -> list[dict[str, Any]]:
        """The latest jobs with their final result (see :func:`recent_results`)."""
        with self._cursor() as cur:
            return recent_results(cur, limit, tenant)

    def list_jobs(
        self,
        tenant: str,
        *,
        limit: int,
        page_token: str = "",
        statuses: Sequence[str] = (),
        problem_type: str = "",
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of the tenant's jobs, newest first, and the token of the next page.

        Raises:
            ValueError: A malformed page token.
        """
        after_at, after_id = decode_page_token(page_token) if page_token else (None, None)
        params = {
            "tenant": tenant,
            "statuses": list(statuses) or None,
            "problem_type": problem_type or None,
            "after_at": after_at,
            "after_id": after_id,
            "limit": limit + 1,
        }
        with self._cursor() as cur:
            cur.execute(_LIST, params)
            rows = cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        token = encode_page_token(rows[-1]["sort_at"], rows[-1]["job_id"]) if more else ""
        return rows, token


def encode_page_token(at: datetime, job_id: str) -> str:
    """An opaque token for keyset pagination."""
    raw = json.dumps([at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    """Inverse of :func:`encode_page_token`.

    Raises:
        ValueError: Not a token of ours.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        at, job_id = json.loads(raw)
        return datetime.fromisoformat(at), str(job_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid page token: {exc}") from exc


def _outcome(row: dict[str, Any], candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The stored final outcome in ``qbridge.JobOutcome`` shape."""
    solution = None
    if row["o_assignment"] is not None:
        solution = {
            "assignment": list(row["o_assignment"]),
            "objective": row["o_objective"],
            "feasible": bool(row["o_feasible"]),
            "frequency": row["o_frequency"],
        }
    return {
        "job_id": row["job_id"],
        "tenant": row["tenant"],
        "status": row["o_status"],
        "reason": row["o_reason"] or "",
        "route": row["o_route"],
        "solution": solution,
        "candidates": [
            {
                "assignment": list(c["assignment"]),
                "objective": c["objective"],
                "feasible": c["feasible"],
                "frequency": c["frequency"],
            }
            for c in candidates
        ],
        "quality": {
            "proven_optimal": bool(row["proven_optimal"]),
            "bound": row["bound"],
            "gap": row["gap"],
            "expected_objective": row["expected_objective"],
            "confidence": row["confidence"],
        },
        "provenance": row["o_provenance"],
        "attempts": row["o_attempts"],
        "quantum_classical_gap": row["quantum_classical_gap"],
        "completed_at": row["o_completed_at"],
    }
