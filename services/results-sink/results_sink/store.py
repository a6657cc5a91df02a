"""The results store: PostgreSQL through psycopg 3 and a connection pool, plain SQL.

Every ``record_*`` method runs in ONE transaction and is idempotent: duplicates and
replays leave exactly one row per entity, and records may arrive in any order
(an outcome before its envelope): each write first upserts a placeholder ``jobs``
row, which the envelope fills in when it arrives.

Database failures are translated into the platform's error classes, so the
consumer knows what to do: an unreachable or restarting database, a deadlock, a
serialization failure or a missing schema is
:class:`~qbridge.errors.StoreUnavailableError`
(transient: retry, never skip); bad values are :class:`InvalidRecordError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any, Literal

import psycopg
from prometheus_client import Counter
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from qbridge.db.errors import translate as db_translate
from qbridge.db.errors import translated as db_translated
from results_sink.mapping import (
    ApprovalRow,
    AttemptRow,
    InvalidRecordError,
    JobRow,
    OutcomeRows,
    TransitionRow,
)

logger = logging.getLogger(__name__)

WriteResult = Literal["inserted", "updated", "duplicate"]

ROWS_WRITTEN = Counter(
    "qbridge_results_sink_rows_total",
    "Rows written by the results sink, by table and result (inserted, updated, duplicate).",
    ["table", "result"],
)


def translate(exc: BaseException) -> BaseException:
    """Map a driver error onto the platform's error classes (:func:`qbridge.db.translate`).

    A value the database rejects is an :class:`InvalidRecordError` (never retried).
    """
    return db_translate(exc, InvalidRecordError)


def translated() -> contextlib.AbstractContextManager[None]:
    """Re-raise driver errors as classified platform errors (see :func:`translate`)."""
    return db_translated(InvalidRecordError)


def _count(table: str, result: WriteResult) -> WriteResult:
    ROWS_WRITTEN.labels(table, result).inc()
    return result


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


# --- SQL ------------------------------------------------------------------------------

_PLACEHOLDER = """
INSERT INTO jobs (job_id, tenant) VALUES (%(job_id)s, %(tenant)s)
ON CONFLICT (job_id) DO NOTHING
"""

_JOB_COLUMNS = (
    "job_id", "tenant", "problem_type", "problem_kind", "schema_version", "input_fingerprint",
    "idempotency_key", "request_id", "problem", "output_shape", "num_variables", "num_qubits",
    "seed", "priority", "fallback_policy", "timeout_ms", "deadline_at", "shot_budget",
    "correlation_id", "tags", "created_at", "accepted_at",
)  # fmt: skip

_UPSERT_JOB = f"""
INSERT INTO jobs ({", ".join(_JOB_COLUMNS)}, envelope_received, status, status_at)
VALUES ({", ".join(f"%({c})s" for c in _JOB_COLUMNS)}, true, 'accepted', %(accepted_at)s)
ON CONFLICT (job_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _JOB_COLUMNS[1:])},
    envelope_received = true,
    status = COALESCE(jobs.status, EXCLUDED.status),
    status_at = COALESCE(jobs.status_at, EXCLUDED.status_at),
    updated_at = now()
WHERE NOT jobs.envelope_received
RETURNING (xmax = 0) AS inserted
"""

_INSERT_APPROVAL = """
INSERT INTO approvals
    (decision_id, job_id, decision, reviewer, reviewer_tenant, comment, correlation_id, decided_at)
VALUES (%(decision_id)s, %(job_id)s, %(decision)s, %(reviewer)s, %(reviewer_tenant)s,
        %(comment)s, %(correlation_id)s, %(decided_at)s)
ON CONFLICT (decision_id) DO NOTHING
"""

_INSERT_TRANSITION = """
INSERT INTO status_transitions
    (job_id, seq, from_status, to_status, reason, attempt, route, backend, correlation_id, at)
VALUES (%(job_id)s, %(seq)s, %(from_status)s, %(to_status)s, %(reason)s, %(attempt)s,
        %(route)s, %(backend)s, %(correlation_id)s, %(at)s)
ON CONFLICT (job_id, seq) DO NOTHING
RETURNING true
"""

# The job's status follows the highest seq; once final (an outcome or a final
# transition was stored), only another final transition may change it.
_APPLY_TRANSITION = """
UPDATE jobs SET
    status = %(to_status)s,
    status_seq = %(seq)s,
    status_at = %(at)s,
    route = COALESCE(%(route)s, route),
    final_at = CASE WHEN %(is_final)s THEN COALESCE(final_at, %(at)s) ELSE final_at END,
    updated_at = now()
WHERE job_id = %(job_id)s
  AND status_seq < %(seq)s
  AND (final_at IS NULL OR %(is_final)s)
"""

_INSERT_STARTED = """
INSERT INTO attempts
    (work_id, job_id, attempt, route, tenant, status, correlation_id, started_at)
VALUES (%(work_id)s, %(job_id)s, %(attempt)s, %(route)s, %(tenant)s, 'started',
        %(correlation_id)s, %(produced_at)s)
ON CONFLICT (work_id) DO UPDATE SET started_at = EXCLUDED.started_at
WHERE attempts.started_at IS NULL
RETURNING (xmax = 0) AS inserted
"""

_TERMINAL_COLUMNS = (
    "status", "error_class", "error_type", "error_message", "backend", "solver", "assignment",
    "objective", "feasible", "quality", "candidates", "provenance", "cost_units", "duration_ms",
)  # fmt: skip

# A terminal outcome upgrades a 'started' row; the first terminal outcome wins.
_UPSERT_TERMINAL = f"""
INSERT INTO attempts
    (work_id, job_id, attempt, route, tenant, correlation_id, finished_at,
     {", ".join(_TERMINAL_COLUMNS)})
VALUES (%(work_id)s, %(job_id)s, %(attempt)s, %(route)s, %(tenant)s, %(correlation_id)s,
        %(produced_at)s, {", ".join(f"%({c})s" for c in _TERMINAL_COLUMNS)})
ON CONFLICT (work_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _TERMINAL_COLUMNS)},
    finished_at = EXCLUDED.finished_at
WHERE attempts.status = 'started'
RETURNING (xmax = 0) AS inserted
"""

_SOLUTION_COLUMNS = (
    "job_id", "tenant", "status", "reason", "problem_type", "input_fingerprint", "route",
    "backend", "solver", "assignment", "objective", "feasible", "frequency", "proven_optimal",
    "bound", "gap", "expected_objective", "confidence", "quantum_classical_gap", "attempts",
    "provenance", "correlation_id", "completed_at",
)  # fmt: skip

_INSERT_SOLUTION = f"""
INSERT INTO solutions ({", ".join(_SOLUTION_COLUMNS)})
VALUES ({", ".join(f"%({c})s" for c in _SOLUTION_COLUMNS)})
ON CONFLICT (job_id) DO NOTHING
RETURNING true
"""

_INSERT_CANDIDATE = """
INSERT INTO candidates (job_id, rank, assignment, objective, feasible, frequency)
VALUES (%(job_id)s, %(rank)s, %(assignment)s, %(objective)s, %(feasible)s, %(frequency)s)
ON CONFLICT (job_id, rank) DO NOTHING
"""

_APPLY_OUTCOME = """
UPDATE jobs SET
    status = %(status)s,
    route = COALESCE(%(route)s, route),
    final_at = COALESCE(final_at, %(completed_at)s),
    updated_at = now()
WHERE job_id = %(job_id)s
"""


class ResultsStore:
    """Domain-facing access to the results database."""

    def __init__(self, pool: ConnectionPool) -> None:
        """Use connections from ``pool`` (owned by the caller)."""
        self.pool = pool

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        with (
            translated(),
            self.pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            yield cur

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with (
            translated(),
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            yield cur

    # --- health -------------------------------------------------------------------

    def ping(self, timeout_s: float = 2.0) -> None:
        """Round-trip to the database.

        Raises:
            StoreUnavailableError: It is unreachable.
        """
        with translated(), self.pool.connection(timeout=timeout_s) as conn:
            conn.execute("SELECT 1")

    # --- writes -------------------------------------------------------------------
    #
    # Each kind of row is written by one pipelined ``executemany`` per statement, so a
    # batch of records costs a few round trips and one commit; the single-record
    # methods are batches of one.

    def record_job(self, row: JobRow) -> WriteResult:
        """Store an accepted envelope (fills a placeholder row if children came first)."""
        with self._tx() as cur:
            return _jobs(cur, [row])[0]

    def record_transition(self, row: TransitionRow) -> WriteResult:
        """Store a status transition and move the job's latest status forward."""
        with self._tx() as cur:
            return _transitions(cur, [row])[0]

    def record_approval(self, row: ApprovalRow) -> WriteResult:
        """Store a reviewer's decision (idempotent on its id)."""
        with self._tx() as cur:
            return _approvals(cur, [row])[0]

    def approvals(self, job_id: str) -> list[dict[str, Any]]:
        """A job's approval decisions, oldest first."""
        with self._read() as cur:
            cur.execute(
                "SELECT * FROM approvals WHERE job_id = %s ORDER BY decided_at, decision_id",
                (job_id,),
            )
            return list(cur.fetchall())

    def record_attempt(self, row: AttemptRow) -> WriteResult:
        """Store a solver outcome: a started attempt, or its ok/error result."""
        with self._tx() as cur:
            return _attempts(cur, [row])[0]

    def record_outcome(self, rows: OutcomeRows) -> WriteResult:
        """Store a job's final outcome, its candidates, and the job's final status.

        The first final outcome of a job wins; a later, different one is logged and
        ignored (there is exactly one final outcome per job by contract).
        """
        with self._tx() as cur:
            return _outcomes(cur, [rows])[0]

    def record_batch(self, rows: Sequence[StoreRow]) -> list[WriteResult]:
        """Store many rows of any kind in ONE transaction (idempotent, like the single writes).

        Envelopes are written first, then transitions, attempts and final outcomes
        (the order the pipeline produces them; any order gives the same end state).

        Returns:
            The result of each row, in the order given.
        """
        by_kind: dict[type, list[int]] = {}
        for i, row in enumerate(rows):
            by_kind.setdefault(type(row), []).append(i)
        results: list[WriteResult] = ["duplicate"] * len(rows)
        with self._tx() as cur:
            for kind, write in _WRITERS:
                idx = by_kind.get(kind, [])
                if idx:
                    for i, res in zip(idx, write(cur, [rows[i] for i in idx]), strict=True):
                        results[i] = res
        return results

    # --- reads --------------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job row joined with its solution (solution columns prefixed ``solution_``)."""
        with self._read() as cur:
            cur.execute(
                """
                SELECT j.*, s.status AS solution_status, s.reason AS solution_reason,
                       s.route AS solution_route, s.backend AS solution_backend,
                       s.solver AS solution_solver, s.assignment AS solution_assignment,
                       s.objective AS solution_objective, s.feasible AS solution_feasible,
                       s.attempts AS solution_attempts, s.provenance AS solution_provenance,
                       s.completed_at AS solution_completed_at
                FROM jobs j LEFT JOIN solutions s USING (job_id)
                WHERE j.job_id = %s
                """,
                (job_id,),
            )
            return cur.fetchone()

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's attempts, in attempt order."""
        with self._read() as cur:
            cur.execute(
                "SELECT * FROM attempts WHERE job_id = %s ORDER BY attempt, route, work_id",
                (job_id,),
            )
            return cur.fetchall()

    def transitions(self, job_id: str) -> list[dict[str, Any]]:
        """The job's status transitions, by seq."""
        with self._read() as cur:
            cur.execute(
                "SELECT * FROM status_transitions WHERE job_id = %s ORDER BY seq", (job_id,)
            )
            return cur.fetchall()

    def candidates(self, job_id: str) -> list[dict[str, Any]]:
        """The final outcome's candidates, best first."""
        with self._read() as cur:
            cur.execute("SELECT * FROM candidates WHERE job_id = %s ORDER BY rank", (job_id,))
            return cur.fetchall()

    def tenant_costs(self, tenants: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Cost units per tenant and route (from finished attempts)."""
        with self._read() as cur:
            cur.execute(
                "SELECT * FROM tenant_costs WHERE (%(t)s::text[] IS NULL OR tenant = ANY(%(t)s)) "
                "ORDER BY tenant, route",
                {"t": list(tenants) if tenants is not None else None},
            )
            return cur.fetchall()


# --- batch writers (inside a caller's transaction) ------------------------------------

StoreRow = JobRow | TransitionRow | AttemptRow | OutcomeRows | ApprovalRow


def _returned(cur: psycopg.Cursor[Any], sql: str, params: Sequence[dict[str, Any]]) -> list[Any]:
    """``executemany`` of a ``RETURNING`` statement: each statement's row (None if none)."""
    cur.executemany(sql, params, returning=True)
    out = []
    while True:
        out.append(cur.fetchone())
        if not cur.nextset():
            return out


def _placeholders(cur: psycopg.Cursor[Any], params: Sequence[dict[str, Any]]) -> None:
    jobs = sorted({(p["job_id"], p["tenant"]) for p in params})
    cur.executemany(_PLACEHOLDER, [{"job_id": j, "tenant": t} for j, t in jobs])


def _upserted(table: str, got: Any) -> WriteResult:
    if got is None:
        return _count(table, "duplicate")
    return _count(table, "inserted" if got[0] else "updated")


def _jobs(cur: psycopg.Cursor[Any], rows: Sequence[JobRow]) -> list[WriteResult]:
    params = []
    for row in rows:
        p = asdict(row)
        p["problem"] = Jsonb(row.problem)
        p["output_shape"] = Jsonb(row.output_shape)
        p["tags"] = Jsonb(row.tags)
        params.append(p)
    return [_upserted("jobs", got) for got in _returned(cur, _UPSERT_JOB, params)]


def _transitions(cur: psycopg.Cursor[Any], rows: Sequence[TransitionRow]) -> list[WriteResult]:
    params = [{**asdict(row), "is_final": row.is_final} for row in rows]
    _placeholders(cur, params)
    inserted = _returned(cur, _INSERT_TRANSITION, params)
    cur.executemany(_APPLY_TRANSITION, params)
    return [_count("status_transitions", "inserted" if got else "duplicate") for got in inserted]


def _attempts(cur: psycopg.Cursor[Any], rows: Sequence[AttemptRow]) -> list[WriteResult]:
    params = []
    for row in rows:
        p = asdict(row)
        p["quality"] = _jsonb(row.quality)
        p["candidates"] = Jsonb(row.candidates)
        p["provenance"] = _jsonb(row.provenance)
        params.append(p)
    _placeholders(cur, params)
    results: list[WriteResult] = ["duplicate"] * len(rows)
    for terminal, sql in ((False, _INSERT_STARTED), (True, _UPSERT_TERMINAL)):
        idx = [i for i, row in enumerate(rows) if row.is_terminal is terminal]
        if idx:
            got = _returned(cur, sql, [params[i] for i in idx])
            for i, g in zip(idx, got, strict=True):
                results[i] = _upserted("attempts", g)
    return results


def _outcomes(cur: psycopg.Cursor[Any], rows: Sequence[OutcomeRows]) -> list[WriteResult]:
    params = []
    for r in rows:
        p = asdict(r.solution)
        p["provenance"] = _jsonb(r.solution.provenance)
        params.append(p)
    _placeholders(cur, params)
    inserted = _returned(cur, _INSERT_SOLUTION, params)
    new = [r for r, got in zip(rows, inserted, strict=True) if got]
    candidates = [asdict(c) for r in new for c in r.candidates]
    if candidates:
        cur.executemany(_INSERT_CANDIDATE, candidates)
    if new:
        cur.executemany(_APPLY_OUTCOME, [p for p, got in zip(params, inserted, strict=True) if got])
    ROWS_WRITTEN.labels("candidates", "inserted").inc(len(candidates))
    dup = [r.solution for r, got in zip(rows, inserted, strict=True) if not got]
    if dup:
        cur.execute(
            "SELECT job_id, status, objective, assignment FROM solutions WHERE job_id = ANY(%s)",
            ([s.job_id for s in dup],),
        )
        stored = {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}
        for sol in dup:
            kept = stored.get(sol.job_id)
            if kept is not None and kept != (sol.status, sol.objective, sol.assignment):
                logger.warning(
                    "ignoring a second, different final outcome for job %s "
                    "(stored %s/%s, got %s/%s)",
                    sol.job_id,
                    kept[0],
                    kept[1],
                    sol.status,
                    sol.objective,
                )
    return [_count("solutions", "inserted" if got else "duplicate") for got in inserted]


def _approvals(cur: psycopg.Cursor[Any], rows: Sequence[ApprovalRow]) -> list[WriteResult]:
    """Reviewers' decisions (idempotent on the decision id)."""
    results: list[WriteResult] = []
    for row in rows:
        cur.execute(_INSERT_APPROVAL, asdict(row))
        results.append(_count("approvals", "inserted" if cur.rowcount == 1 else "duplicate"))
    return results


_WRITERS: tuple[tuple[type, Callable[[psycopg.Cursor[Any], Any], list[WriteResult]]], ...] = (
    (JobRow, _jobs),
    (TransitionRow, _transitions),
    (AttemptRow, _attempts),
    (OutcomeRows, _outcomes),
    (ApprovalRow, _approvals),
)
