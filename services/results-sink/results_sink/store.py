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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any, Literal, TypeVar

import psycopg
from prometheus_client import Counter as MetricCounter
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from qbridge.db.errors import translate as db_translate
from qbridge.db.errors import translated as db_translated
from qbridge.errors import StoreUnavailableError
from results_sink.mapping import (
    ApprovalRow,
    AttemptRow,
    InvalidRecordError,
    JobRow,
    OutcomeRows,
    ProgressRow,
    SolutionRow,
    TransitionRow,
    json_text,
)

logger = logging.getLogger(__name__)

WriteResult = Literal["inserted", "updated", "duplicate"]
_R = TypeVar("_R")

ROWS_WRITTEN = MetricCounter(
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


# --- SQL ------------------------------------------------------------------------------

_JOB_COLUMNS = (
    "job_id", "tenant", "problem_type", "problem_kind", "schema_version", "input_fingerprint",
    "idempotency_key", "request_id", "problem", "output_shape", "num_variables", "num_qubits",
    "seed", "priority", "fallback_policy", "timeout_ms", "deadline_at", "shot_budget",
    "correlation_id", "tags", "created_at", "accepted_at",
)  # fmt: skip

_INSERT_APPROVAL = """
INSERT INTO approvals
    (decision_id, job_id, decision, reviewer, reviewer_tenant, comment, correlation_id, decided_at)
VALUES (%(decision_id)s, %(job_id)s, %(decision)s, %(reviewer)s, %(reviewer_tenant)s,
        %(comment)s, %(correlation_id)s, %(decided_at)s)
ON CONFLICT (decision_id) DO NOTHING
"""

_PROGRESS_COLUMNS = (
    "job_id", "work_id", "attempt", "backend", "phase", "iteration", "max_iterations",
    "best_energy", "resumed_from_iteration", "backend_calls", "shots_used", "run_started_at",
    "seq", "emitted_at", "correlation_id",
)  # fmt: skip

# The newest event wins: a later attempt, then a later run of it (a redelivery started
# after the run it replaces), then a later event of the run. Replays, duplicates and
# events of a zombie run that arrive late change nothing.
_UPSERT_PROGRESS = f"""
INSERT INTO job_progress ({", ".join(_PROGRESS_COLUMNS)})
VALUES ({", ".join(f"%({c})s" for c in _PROGRESS_COLUMNS)})
ON CONFLICT (job_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _PROGRESS_COLUMNS[1:])},
    recorded_at = now()
WHERE (job_progress.attempt, job_progress.run_started_at, job_progress.seq)
    < (EXCLUDED.attempt, EXCLUDED.run_started_at, EXCLUDED.seq)
RETURNING (xmax = 0) AS inserted
"""

_SOLUTION_COLUMNS = (
    "job_id", "tenant", "status", "reason", "problem_type", "input_fingerprint", "route",
    "backend", "solver", "assignment", "objective", "feasible", "frequency", "proven_optimal",
    "bound", "gap", "expected_objective", "confidence", "quantum_classical_gap", "attempts",
    "provenance", "correlation_id", "completed_at",
)  # fmt: skip


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
    # Each kind of row is written by one multi-row statement per batch (see the batch
    # writers below), so a batch of records costs a few statements and one commit; the
    # single-record methods are batches of one.

    def record_job(self, row: JobRow) -> WriteResult:
        """Store an accepted envelope (fills a placeholder row if children came first)."""
        with self._tx() as cur:
            return _jobs(cur, [row], set())[0]

    def record_transition(self, row: TransitionRow) -> WriteResult:
        """Store a status transition and move the job's latest status forward."""
        with self._tx() as cur:
            return _transitions(cur, [row], set())[0]

    def record_approval(self, row: ApprovalRow) -> WriteResult:
        """Store a reviewer's decision (idempotent on its id)."""
        with self._tx() as cur:
            return _approvals(cur, [row], set())[0]

    def record_progress(self, row: ProgressRow) -> WriteResult:
        """Store a progress event if it is newer than the job's stored one."""
        with self._tx() as cur:
            return _progress(cur, [row], set())[0]

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """The job's latest stored progress, if any."""
        with self._read() as cur:
            cur.execute("SELECT * FROM job_progress WHERE job_id = %s", (job_id,))
            return cur.fetchone()

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
            return _attempts(cur, [row], set())[0]

    def record_outcome(self, rows: OutcomeRows) -> WriteResult:
        """Store a job's final outcome, its candidates, and the job's final status.

        The first final outcome of a job wins; a later, different one is logged and
        ignored (there is exactly one final outcome per job by contract).
        """
        with self._tx() as cur:
            return _outcomes(cur, [rows], set())[0]

    def record_batch(self, rows: Sequence[StoreRow]) -> list[WriteResult]:
        """Store many rows of any kind in ONE transaction (idempotent, like the single writes).

        Envelopes are written first, then transitions, attempts and final outcomes
        (the order the pipeline produces them; any order gives the same end state).
        Of several rows with one key (a job's envelope, a transition's seq, a work
        item's started or terminal outcome, a job's outcome) the first is written and
        the rest are duplicates; a job's transitions move its status in seq order.

        Returns:
            The result of each row, in the order given.
        """
        by_kind: dict[type, list[int]] = {}
        for i, row in enumerate(rows):
            by_kind.setdefault(type(row), []).append(i)
        results: list[WriteResult] = ["duplicate"] * len(rows)
        have: set[str] = set()  # jobs whose row exists in this transaction
        with self._tx() as cur:
            for kind, write in _WRITERS:
                if kind is TransitionRow:
                    # One statement for every job row the children may need.
                    _placeholders(cur, [_job_of(r) for r in rows if _needs_job(r)], have)
                idx = by_kind.get(kind, [])
                if idx:
                    got = write(cur, [rows[i] for i in idx], have)
                    for i, res in zip(idx, got, strict=True):
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
#
# Every kind of row is written with ONE multi-row statement per batch: the values travel
# as one array per column and ``unnest`` turns them back into rows on the server. Row by
# row (``executemany``) the server parses, plans and executes one statement per row and
# the client adapts every row's parameters on its own; that was most of the sink's and
# much of PostgreSQL's CPU. A multi-row ``ON CONFLICT DO UPDATE`` may not touch one row
# twice, so rows of the same key within a batch are reduced in Python first (the first
# one wins, as it did row by row: the later ones are duplicates). Rows are written in key
# order, so concurrent writers lock rows in the same order.

StoreRow = JobRow | TransitionRow | AttemptRow | OutcomeRows | ApprovalRow | ProgressRow

# Column types for ``unnest``: JSON documents and ``bigint[]`` values travel as text
# (a 2-D array would have to be rectangular) and are cast back per row.
_VIA_TEXT = {"jsonb", "bigint[]"}


def _unnest(columns: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """``(select list, FROM item)`` reading one array parameter per ``(name, type)``."""
    source = ", ".join(f"%b::{'text' if t in _VIA_TEXT else t}[]" for _, t in columns)
    names = ", ".join(c for c, _ in columns)
    select = ", ".join(f"t.{c}::{t}" if t in _VIA_TEXT else f"t.{c}" for c, t in columns)
    return select, f"unnest({source}) AS t({names})"


def _arrays(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column (the ``unnest`` parameters)."""
    return [list(col) for col in zip(*rows, strict=True)]


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """:func:`_arrays`, also for no rows (``width`` empty columns)."""
    return _arrays(rows) if rows else [[] for _ in range(width)]


def _json(value: Any) -> str | None:
    return None if value is None else json_text(value)


def _int_array(values: Sequence[int] | None) -> str | None:
    return None if values is None else "{" + ",".join(map(str, values)) + "}"


def _first_by(rows: Sequence[_R], key: Callable[[_R], Any]) -> dict[Any, int]:
    """Index of the first row of each key (the later ones are duplicates), in key order."""
    first: dict[Any, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(key(row), i)
    return dict(sorted(first.items()))


_PLACEHOLDERS = """
INSERT INTO jobs (job_id, tenant)
SELECT * FROM unnest(%b::text[], %b::text[]) ORDER BY 1
ON CONFLICT (job_id) DO NOTHING
"""


def _placeholders(cur: psycopg.Cursor[Any], rows: Sequence[Any], have: set[str]) -> None:
    """Placeholder ``jobs`` rows for children whose job row may be missing.

    ``have`` holds the jobs known to exist in this transaction; it is updated.
    """
    jobs = sorted({(r.job_id, r.tenant) for r in rows if r.job_id not in have})
    if not jobs:
        return
    first = _first_by(jobs, lambda j: j[0])
    cur.execute(_PLACEHOLDERS, _arrays([jobs[i] for i in first.values()]))
    have.update(first)


def _needs_job(row: StoreRow) -> bool:
    """Whether the row references a ``jobs`` row (a foreign key)."""
    return not isinstance(row, JobRow | ApprovalRow)


def _job_of(row: StoreRow) -> Any:
    """The part of a row that names its job (``job_id``, ``tenant``)."""
    return row.solution if isinstance(row, OutcomeRows) else row


def _upserted(table: str, got: Any) -> WriteResult:
    if got is None:
        return _count(table, "duplicate")
    return _count(table, "inserted" if got else "updated")


def _results(
    table: str,
    n: int,
    first: dict[Any, int],
    returned: dict[Any, Any],
) -> list[WriteResult]:
    """Each row's result: first rows by what the statement returned, the rest duplicates.

    ``returned`` maps the key of each row written to ``(xmax = 0)``: True if inserted.
    """
    results: list[WriteResult] = ["duplicate"] * n
    for key, i in first.items():
        got = returned.get(key)
        if got is not None:
            results[i] = "inserted" if got else "updated"
    for result, count in Counter(results).items():
        ROWS_WRITTEN.labels(table, result).inc(count)
    return results


_JOB_TYPES = {
    "schema_version": "integer", "problem": "jsonb", "output_shape": "jsonb",
    "num_variables": "integer", "num_qubits": "integer", "seed": "bigint", "priority": "integer",
    "timeout_ms": "bigint", "deadline_at": "timestamptz", "shot_budget": "bigint",
    "tags": "jsonb", "created_at": "timestamptz", "accepted_at": "timestamptz",
}  # fmt: skip
_JOB_SELECT, _JOB_FROM = _unnest([(c, _JOB_TYPES.get(c, "text")) for c in _JOB_COLUMNS])

_UPSERT_JOBS = f"""
INSERT INTO jobs ({", ".join(_JOB_COLUMNS)}, envelope_received, status, status_at)
SELECT {_JOB_SELECT}, true, 'accepted', t.accepted_at FROM {_JOB_FROM}
ON CONFLICT (job_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _JOB_COLUMNS[1:])},
    envelope_received = true,
    status = COALESCE(jobs.status, EXCLUDED.status),
    status_at = COALESCE(jobs.status_at, EXCLUDED.status_at),
    updated_at = now()
WHERE NOT jobs.envelope_received
RETURNING job_id, (xmax = 0) AS inserted
"""


def _jobs(cur: psycopg.Cursor[Any], rows: Sequence[JobRow], have: set[str]) -> list[WriteResult]:
    first = _first_by(rows, lambda r: r.job_id)
    values = []
    for i in first.values():
        r = rows[i]
        values.append(
            (
                r.job_id, r.tenant, r.problem_type, r.problem_kind, r.schema_version,
                r.input_fingerprint, r.idempotency_key, r.request_id, json_text(r.problem),
                json_text(r.output_shape), r.num_variables, r.num_qubits, r.seed, r.priority,
                r.fallback_policy, r.timeout_ms, r.deadline_at, r.shot_budget, r.correlation_id,
                json_text(r.tags), r.created_at, r.accepted_at,
            )
        )  # fmt: skip
    cur.execute(_UPSERT_JOBS, _arrays(values))
    returned = dict(cur.fetchall())
    have.update(first)
    return _results("jobs", len(rows), first, returned)


_TRANSITION_SELECT, _TRANSITION_FROM = _unnest(
    [
        ("job_id", "text"), ("seq", "integer"), ("from_status", "text"), ("to_status", "text"),
        ("reason", "text"), ("attempt", "integer"), ("route", "text"), ("backend", "text"),
        ("correlation_id", "text"), ("at", "timestamptz"),
    ]
)  # fmt: skip

_INSERT_TRANSITIONS = f"""
INSERT INTO status_transitions
    (job_id, seq, from_status, to_status, reason, attempt, route, backend, correlation_id, at)
SELECT {_TRANSITION_SELECT} FROM {_TRANSITION_FROM}
ON CONFLICT (job_id, seq) DO NOTHING
RETURNING job_id, seq
"""

# The job's status follows the highest seq; once final (an outcome or a final transition
# was stored), only another final transition may change it. Applying a job's transitions
# one by one in seq order, each where ``status_seq < seq AND (final_at IS NULL OR final)``,
# is folded into ONE update per job: the transitions that apply are those above the
# stored seq (``s0``), either final or (while the job is not final) below the first final
# one above s0. The last of them gives the status, the last route among them the route,
# the first final one the final time. The update re-checks the state the fold started
# from: a job a concurrent writer moved meanwhile is counted, and the fold runs again.
_APPLY_TRANSITIONS = """
WITH t AS (
    SELECT * FROM unnest(%b::text[], %b::integer[], %b::text[], %b::text[],
                         %b::timestamptz[], %b::boolean[])
        AS t(job_id, seq, to_status, route, at, is_final)
), cur AS (
    SELECT j.job_id, j.status_seq AS s0, j.final_at IS NOT NULL AS was_final
    FROM jobs j WHERE j.job_id IN (SELECT job_id FROM t)
), first_final AS (
    SELECT t.job_id, min(t.seq) AS seq
    FROM t JOIN cur USING (job_id)
    WHERE t.is_final AND t.seq > cur.s0
    GROUP BY t.job_id
), applied AS (
    SELECT t.*, cur.s0, cur.was_final
    FROM t JOIN cur USING (job_id) LEFT JOIN first_final ff USING (job_id)
    WHERE t.seq > cur.s0
      AND (t.is_final OR (NOT cur.was_final AND (ff.seq IS NULL OR t.seq < ff.seq)))
), folded AS (
    SELECT job_id, min(s0) AS s0, bool_or(was_final) AS was_final, max(seq) AS seq,
           (array_agg(to_status ORDER BY seq DESC))[1] AS to_status,
           (array_agg(at ORDER BY seq DESC))[1] AS at,
           (array_agg(route ORDER BY seq DESC) FILTER (WHERE route IS NOT NULL))[1] AS route,
           (array_agg(at ORDER BY seq) FILTER (WHERE is_final))[1] AS final_at
    FROM applied GROUP BY job_id
), moved AS (
    UPDATE jobs SET
        status = f.to_status,
        status_seq = f.seq,
        status_at = f.at,
        route = COALESCE(f.route, jobs.route),
        final_at = COALESCE(jobs.final_at, f.final_at),
        updated_at = now()
    FROM folded f
    WHERE jobs.job_id = f.job_id
      AND jobs.status_seq = f.s0
      AND (jobs.final_at IS NOT NULL) = f.was_final
    RETURNING 1
)
SELECT (SELECT count(*) FROM folded) - (SELECT count(*) FROM moved)
"""

_MAX_FOLDS = 10


def _transitions(
    cur: psycopg.Cursor[Any], rows: Sequence[TransitionRow], have: set[str]
) -> list[WriteResult]:
    _placeholders(cur, rows, have)
    first = _first_by(rows, lambda r: (r.job_id, r.seq))
    picked = [rows[i] for i in first.values()]
    cur.execute(
        _INSERT_TRANSITIONS,
        _arrays(
            [
                (r.job_id, r.seq, r.from_status, r.to_status, r.reason, r.attempt, r.route,
                 r.backend, r.correlation_id, r.at)
                for r in picked
            ]
        ),
    )  # fmt: skip
    returned = {(job_id, seq): True for job_id, seq in cur.fetchall()}
    folds = _arrays([(r.job_id, r.seq, r.to_status, r.route, r.at, r.is_final) for r in picked])
    for _ in range(_MAX_FOLDS):
        cur.execute(_APPLY_TRANSITIONS, folds)
        got = cur.fetchone()
        if not got or not got[0]:
            break
        logger.debug(
            "%s jobs moved by a concurrent writer; folding their transitions again", got[0]
        )
    else:
        raise StoreUnavailableError("job status kept moving under concurrent writers; retry")
    return _results("status_transitions", len(rows), first, returned)


_ATTEMPT_KEYS = (
    ("work_id", "text"), ("job_id", "text"), ("attempt", "integer"), ("route", "text"),
    ("tenant", "text"), ("correlation_id", "text"), ("produced_at", "timestamptz"),
)  # fmt: skip
_STARTED_SELECT, _STARTED_FROM = _unnest(_ATTEMPT_KEYS)

_INSERT_STARTED = f"""
INSERT INTO attempts
    (work_id, job_id, attempt, route, tenant, correlation_id, started_at, status)
SELECT {_STARTED_SELECT}, 'started' FROM {_STARTED_FROM}
ON CONFLICT (work_id) DO UPDATE SET started_at = EXCLUDED.started_at
WHERE attempts.started_at IS NULL
RETURNING work_id, (xmax = 0) AS inserted
"""

_TERMINAL_TYPES = (
    ("status", "text"), ("error_class", "text"), ("error_type", "text"),
    ("error_message", "text"), ("backend", "text"), ("solver", "text"),
    ("assignment", "bigint[]"), ("objective", "double precision"), ("feasible", "boolean"),
    ("quality", "jsonb"), ("candidates", "jsonb"), ("provenance", "jsonb"),
    ("cost_units", "double precision"), ("duration_ms", "double precision"),
)  # fmt: skip
_TERMINAL_COLUMNS = tuple(c for c, _ in _TERMINAL_TYPES)
_TERMINAL_SELECT, _TERMINAL_FROM = _unnest(_ATTEMPT_KEYS + _TERMINAL_TYPES)

# A terminal outcome upgrades a 'started' row; the first terminal outcome wins.
_UPSERT_TERMINALS = f"""
INSERT INTO attempts
    (work_id, job_id, attempt, route, tenant, correlation_id, finished_at,
     {", ".join(_TERMINAL_COLUMNS)})
SELECT {_TERMINAL_SELECT} FROM {_TERMINAL_FROM}
ON CONFLICT (work_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _TERMINAL_COLUMNS)},
    finished_at = EXCLUDED.finished_at
WHERE attempts.status = 'started'
RETURNING work_id, (xmax = 0) AS inserted
"""


def _attempts(
    cur: psycopg.Cursor[Any], rows: Sequence[AttemptRow], have: set[str]
) -> list[WriteResult]:
    _placeholders(cur, rows, have)
    results: list[WriteResult] = ["duplicate"] * len(rows)
    # Started rows first, then terminal ones (either order gives the same row).
    for terminal, sql in ((False, _INSERT_STARTED), (True, _UPSERT_TERMINALS)):
        idx = [i for i, row in enumerate(rows) if row.is_terminal is terminal]
        if not idx:
            continue
        group = [rows[i] for i in idx]
        first = _first_by(group, lambda r: r.work_id)
        values = []
        for i in first.values():
            r = group[i]
            keys: tuple[Any, ...] = (
                r.work_id, r.job_id, r.attempt, r.route, r.tenant, r.correlation_id, r.produced_at,
            )  # fmt: skip
            if terminal:
                keys += (
                    r.status, r.error_class, r.error_type, r.error_message, r.backend, r.solver,
                    _int_array(r.assignment), r.objective, r.feasible, _json(r.quality),
                    json_text(r.candidates), _json(r.provenance), r.cost_units, r.duration_ms,
                )  # fmt: skip
            values.append(keys)
        cur.execute(sql, _arrays(values))
        returned = dict(cur.fetchall())
        for i, res in zip(idx, _results("attempts", len(group), first, returned), strict=True):
            results[i] = res
    return results


_SOLUTION_TYPES = {
    "assignment": "bigint[]", "objective": "double precision", "feasible": "boolean",
    "frequency": "double precision", "proven_optimal": "boolean", "bound": "double precision",
    "gap": "double precision", "expected_objective": "double precision",
    "confidence": "double precision", "quantum_classical_gap": "double precision",
    "attempts": "integer", "provenance": "jsonb", "completed_at": "timestamptz",
}  # fmt: skip
_SOLUTION_SELECT, _SOLUTION_FROM = _unnest(
    [(c, _SOLUTION_TYPES.get(c, "text")) for c in _SOLUTION_COLUMNS]
)

_CANDIDATE_SELECT, _CANDIDATE_FROM = _unnest(
    [
        ("job_id", "text"), ("rank", "integer"), ("assignment", "bigint[]"),
        ("objective", "double precision"), ("feasible", "boolean"),
        ("frequency", "double precision"),
    ]
)  # fmt: skip

# The first final outcome of a job wins: only a solution newly inserted brings its
# candidates and moves the job to its final status (one statement: no round trips).
_WRITE_OUTCOMES = f"""
WITH new AS (
    INSERT INTO solutions ({", ".join(_SOLUTION_COLUMNS)})
    SELECT {_SOLUTION_SELECT} FROM {_SOLUTION_FROM}
    ON CONFLICT (job_id) DO NOTHING
    RETURNING job_id, status, route, completed_at
), candidates_written AS (
    INSERT INTO candidates (job_id, rank, assignment, objective, feasible, frequency)
    SELECT {_CANDIDATE_SELECT} FROM {_CANDIDATE_FROM}
    WHERE t.job_id IN (SELECT job_id FROM new)
    ON CONFLICT (job_id, rank) DO NOTHING
), final AS (
    UPDATE jobs SET
        status = new.status,
        route = COALESCE(new.route, jobs.route),
        final_at = COALESCE(jobs.final_at, new.completed_at),
        updated_at = now()
    FROM new
    WHERE jobs.job_id = new.job_id
)
SELECT job_id, true FROM new
"""


def _outcomes(
    cur: psycopg.Cursor[Any], rows: Sequence[OutcomeRows], have: set[str]
) -> list[WriteResult]:
    solutions = [r.solution for r in rows]
    _placeholders(cur, solutions, have)
    first = _first_by(solutions, lambda s: s.job_id)
    values = []
    candidates = []
    for i in first.values():
        s = solutions[i]
        values.append(
            (
                s.job_id, s.tenant, s.status, s.reason, s.problem_type, s.input_fingerprint,
                s.route, s.backend, s.solver, _int_array(s.assignment), s.objective, s.feasible,
                s.frequency, s.proven_optimal, s.bound, s.gap, s.expected_objective,
                s.confidence, s.quantum_classical_gap, s.attempts, _json(s.provenance),
                s.correlation_id, s.completed_at,
            )
        )  # fmt: skip
        candidates += [
            (c.job_id, c.rank, _int_array(c.assignment), c.objective, c.feasible, c.frequency)
            for c in rows[i].candidates
        ]
    cur.execute(_WRITE_OUTCOMES, [*_arrays(values), *_columns(candidates, 6)])
    inserted = dict(cur.fetchall())
    ROWS_WRITTEN.labels("candidates", "inserted").inc(
        sum(len(rows[i].candidates) for job_id, i in first.items() if job_id in inserted)
    )
    dup = [
        s for i, s in enumerate(solutions) if first.get(s.job_id) != i or s.job_id not in inserted
    ]
    if dup:
        _warn_if_different(cur, dup)
    return _results("solutions", len(rows), first, inserted)


def _warn_if_different(cur: psycopg.Cursor[Any], dup: Sequence[SolutionRow]) -> None:
    """Log a second, different final outcome of a job (the stored one is kept)."""
    cur.execute(
        "SELECT job_id, status, objective, assignment FROM solutions WHERE job_id = ANY(%s)",
        ([s.job_id for s in dup],),
    )
    stored = {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}
    for sol in dup:
        kept = stored.get(sol.job_id)
        if kept is not None and kept != (sol.status, sol.objective, sol.assignment):
            logger.warning(
                "ignoring a second, different final outcome for job %s (stored %s/%s, got %s/%s)",
                sol.job_id,
                kept[0],
                kept[1],
                sol.status,
                sol.objective,
            )


def _approvals(
    cur: psycopg.Cursor[Any], rows: Sequence[ApprovalRow], have: set[str]
) -> list[WriteResult]:
    """Reviewers' decisions (idempotent on the decision id; rare: row by row)."""
    results: list[WriteResult] = []
    for row in rows:
        cur.execute(_INSERT_APPROVAL, asdict(row))
        results.append(_count("approvals", "inserted" if cur.rowcount == 1 else "duplicate"))
    return results


def _progress(
    cur: psycopg.Cursor[Any], rows: Sequence[ProgressRow], have: set[str]
) -> list[WriteResult]:
    """Latest progress per job (rows of one job in one batch: applied in order, pipelined).

    Progress events are throttled and few, and each one's result depends on the ones
    before it, so they stay one statement per row.
    """
    _placeholders(cur, rows, have)
    params = [{**asdict(row), "phase": row.phase.value} for row in rows]
    cur.executemany(_UPSERT_PROGRESS, params, returning=True)
    results: list[WriteResult] = []
    while True:
        got = cur.fetchone()
        results.append(_upserted("job_progress", None if got is None else got[0]))
        if not cur.nextset():
            return results


_WRITERS: tuple[
    tuple[type, Callable[[psycopg.Cursor[Any], Any, set[str]], list[WriteResult]]], ...
] = (
    (JobRow, _jobs),
    (TransitionRow, _transitions),
    (AttemptRow, _attempts),
    (OutcomeRows, _outcomes),
    (ApprovalRow, _approvals),
    (ProgressRow, _progress),
)
