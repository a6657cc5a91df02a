"""What the dashboard shows, read from the results database (and Kafka lag), as plain data.

:func:`build_summary` returns a JSON-ready ``dict`` (served as ``/api/summary`` and
rendered by :mod:`qbridge.dashboard.page`):

* ``totals``: jobs seen in the window by latest status, final jobs, fallback rate;
* ``routes``: final jobs by route / backend / solver / status;
* ``fallback``: degraded share, reasons (numbers masked so they group), a time series;
* ``latency``: end-to-end p50/p95 per route (accepted -> final outcome);
* ``quality``: per problem class and route, how close the answers are to the best
  answer known for the same instance (same input fingerprint, any route, any time):
  mean relative gap ``(best - objective) / max(1, |best|)`` in the problem's own
  sense (0 = as good as the best known), the share at the best known, feasibility,
  and head-to-head counts (instances answered by both routes, e.g. race mode);
* ``lag``: per consumer group and topic, with the orchestrator's thresholds;
* ``recent``: the latest jobs.
* ``pending_approvals``: jobs held for a reviewer's approval (oldest first).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from qbridge.bus.lag_monitor import LagSnapshot
from qbridge.problems.base import Sense
from qbridge.problems.registry import PROBLEM_TYPES
from qbridge.results.read import recent_results

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
"""Gives a connection for the duration of a ``with`` block (e.g. ``pool.connection``)."""

SERIES_BUCKETS = 24


@dataclass(frozen=True)
class Thresholds:
    """The orchestrator's backpressure thresholds (messages of executor lag).

    Attributes:
        degrade_quantum_lag: Above this quantum-executor lag, quantum work goes classical.
        pause_low_priority_lag: Above this total executor lag, low priority waits.
    """

    degrade_quantum_lag: int = 20
    pause_low_priority_lag: int = 200


def _sense_sql() -> str:
    """``CASE`` giving +1 for maximized problem types and -1 for minimized ones."""
    arms = " ".join(
        f"WHEN '{kind}' THEN {1 if cls.sense is Sense.MAXIMIZE else -1}"
        for kind, cls in sorted(PROBLEM_TYPES.items())
    )
    return f"(CASE j.problem_type {arms} ELSE -1 END)"


_STATUS_SQL = """
SELECT COALESCE(status, 'pending') AS status, count(*) AS jobs
FROM jobs
WHERE COALESCE(created_at, first_seen_at) >= %(since)s
GROUP BY 1
"""

_ROUTES_SQL = """
SELECT COALESCE(route, 'none') AS route, COALESCE(backend, '-') AS backend,
       COALESCE(solver, '-') AS solver, status, count(*) AS jobs
FROM solutions
WHERE completed_at >= %(since)s
GROUP BY 1, 2, 3, 4
ORDER BY jobs DESC, route, backend
"""

_REASONS_SQL = """
SELECT reason, count(*) AS jobs
FROM solutions
WHERE completed_at >= %(since)s AND status = 'degraded'
GROUP BY reason
"""

_SPAN_SQL = """
SELECT min(completed_at) AS first, max(completed_at) AS last
FROM solutions WHERE completed_at >= %(since)s
"""

_SERIES_SQL = """
SELECT width_bucket(EXTRACT(EPOCH FROM completed_at), %(t0)s, %(t1)s, %(n)s) AS bucket,
       count(*) FILTER (WHERE status = 'succeeded' AND route = 'quantum') AS quantum,
       count(*) FILTER (WHERE status = 'succeeded' AND route IS DISTINCT FROM 'quantum')
           AS classical,
       count(*) FILTER (WHERE status = 'degraded') AS degraded,
       count(*) FILTER (WHERE status IN ('failed', 'expired')) AS failed
FROM solutions
WHERE completed_at >= %(since)s
GROUP BY 1
"""

_LATENCY_SQL = """
SELECT route, count(*) AS jobs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95_ms
FROM (
    SELECT COALESCE(s.route, 'none') AS route,
           EXTRACT(EPOCH FROM (s.completed_at - COALESCE(j.accepted_at, j.created_at))) * 1000
               AS ms
    FROM solutions s JOIN jobs j USING (job_id)
    WHERE s.completed_at >= %(since)s AND COALESCE(j.accepted_at, j.created_at) IS NOT NULL
) x
GROUP BY route
ORDER BY route
"""

_QUALITY_SQL = f"""
WITH recent AS (
    SELECT j.problem_type, j.input_fingerprint, a.route, a.status, a.feasible,
           a.objective, {_sense_sql()} AS s
    FROM attempts a JOIN jobs j USING (job_id)
    WHERE a.status IN ('ok', 'error') AND a.finished_at >= %(since)s
      AND j.problem_type IS NOT NULL AND j.input_fingerprint IS NOT NULL
),
best AS (
    SELECT j.input_fingerprint, max({_sense_sql()} * a.objective) AS b,
           count(DISTINCT a.route) AS routes
    FROM attempts a JOIN jobs j USING (job_id)
    WHERE a.status = 'ok' AND a.feasible AND a.objective IS NOT NULL
      AND j.input_fingerprint IN (SELECT input_fingerprint FROM recent)
    GROUP BY j.input_fingerprint
)
SELECT r.problem_type, r.route,
       count(*) AS attempts,
       count(*) FILTER (WHERE r.status = 'ok') AS ok,
       count(*) FILTER (WHERE r.status = 'ok' AND r.feasible) AS feasible,
       avg((b.b - r.s * r.objective) / greatest(1.0, abs(b.b)))
           FILTER (WHERE r.status = 'ok' AND r.feasible) AS mean_gap,
       count(*) FILTER (WHERE r.status = 'ok' AND r.feasible
                          AND r.s * r.objective >= b.b - 1e-9 * greatest(1.0, abs(b.b)))
           AS at_best,
       count(*) FILTER (WHERE r.status = 'ok' AND r.feasible AND b.routes > 1) AS head_to_head
FROM recent r LEFT JOIN best b USING (input_fingerprint)
GROUP BY r.problem_type, r.route
ORDER BY r.problem_type, r.route
"""

_RACE_SQL = """
SELECT problem_type, count(*) AS jobs, avg(quantum_classical_gap) AS mean_gap
FROM solutions
WHERE completed_at >= %(since)s AND quantum_classical_gap IS NOT NULL
GROUP BY problem_type
ORDER BY problem_type
"""

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


_PENDING_SQL = """
SELECT job_id, tenant, problem_type, num_qubits, shot_budget, status_at, deadline_at
FROM jobs WHERE status = 'awaiting_approval'
ORDER BY status_at NULLS LAST, job_id LIMIT %(limit)s
"""


def reason_label(reason: str | None) -> str:
    """A groupable label of a degradation reason: first clause, numbers masked."""
    text = (reason or "").split(";", 1)[0].strip()
    return _NUMBER.sub("N", text) or "unspecified"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def build_summary(
    connect: Connect,
    *,
    window: timedelta = timedelta(hours=1),
    limit: int = 25,
    lag: LagSnapshot | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
    statement_timeout_ms: int = 5000,
) -> dict[str, Any]:
    """Read everything the dashboard shows.

    Args:
        connect: Connection factory (``with connect() as conn``).
        window: How far back the aggregates look.
        limit: Recent jobs listed.
        lag: Consumer-group lag to include (``None``: not available here).
        thresholds: The orchestrator's thresholds, drawn on the lag chart.
        now: The end of the window (default: the database's clock).
        statement_timeout_ms: Per-statement limit for the dashboard's queries.

    Raises:
        psycopg.Error: The database could not be read.
    """
    thresholds = thresholds or Thresholds()
    with connect() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # One consistent snapshot for every aggregate on the page.
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
        if now is None:
            cur.execute("SELECT now() AS now")
            row = cur.fetchone()
            now = row["now"] if row else datetime.now(UTC)
        since = now - window
        p = {"since": since, "limit": limit}
        statuses = {r["status"]: int(r["jobs"]) for r in cur.execute(_STATUS_SQL, p).fetchall()}
        routes = cur.execute(_ROUTES_SQL, p).fetchall()
        reasons = cur.execute(_REASONS_SQL, p).fetchall()
        span = cur.execute(_SPAN_SQL, p).fetchone() or {}
        series_rows: list[dict[str, Any]] = []
        t0 = t1 = None
        if span.get("first") is not None:
            t0 = span["first"].timestamp()
            t1 = max(now.timestamp(), span["last"].timestamp()) + 1e-3
            series_rows = cur.execute(
                _SERIES_SQL, {**p, "t0": t0, "t1": t1, "n": SERIES_BUCKETS}
            ).fetchall()
        latency = cur.execute(_LATENCY_SQL, p).fetchall()
        quality = cur.execute(_QUALITY_SQL, p).fetchall()
        race = cur.execute(_RACE_SQL, p).fetchall()
        recent = recent_results(cur, limit)
        pending = cur.execute(_PENDING_SQL, {"limit": limit}).fetchall()

    final = sum(int(r["jobs"]) for r in routes)
    degraded = sum(int(r["jobs"]) for r in routes if r["status"] == "degraded")
    by_reason: dict[str, int] = {}
    for r in reasons:
        label = reason_label(r["reason"])
        by_reason[label] = by_reason.get(label, 0) + int(r["jobs"])

    buckets = []
    if t0 is not None and t1 is not None:
        width = (t1 - t0) / SERIES_BUCKETS
        got = {int(r["bucket"]): r for r in series_rows}
        for b in range(1, SERIES_BUCKETS + 1):
            r = got.get(b, {})
            counts = {k: int(r.get(k) or 0) for k in ("quantum", "classical", "degraded", "failed")}
            total = sum(counts.values())
            buckets.append(
                {
                    "start": datetime.fromtimestamp(t0 + (b - 1) * width, UTC).isoformat(),
                    **counts,
                    "total": total,
                    "fallback_rate": counts["degraded"] / total if total else None,
                }
            )

    lag_groups = []
    if lag is not None:
        for group, per_topic in sorted(lag.groups.items()):
            lag_groups.append(
                {"group": group, "topics": dict(per_topic), "total": sum(per_topic.values())}
            )

    return {
        "generated_at": now.isoformat(),
        "window_s": int(window.total_seconds()),
        "totals": {
            "jobs": sum(statuses.values()),
            "by_status": dict(sorted(statuses.items())),
            "final": final,
            "degraded": degraded,
            "fallback_rate": degraded / final if final else None,
            "quantum_answers": sum(int(r["jobs"]) for r in routes if r["route"] == "quantum"),
        },
        "routes": [{k: (int(v) if k == "jobs" else v) for k, v in r.items()} for r in routes],
        "fallback": {
            "rate": degraded / final if final else None,
            "degraded": degraded,
            "final": final,
            "reasons": [
                {"reason": k, "jobs": v}
                for k, v in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "series": buckets,
        },
        "latency": [
            {
                "route": r["route"],
                "jobs": int(r["jobs"]),
                "p50_ms": _num(r["p50_ms"]),
                "p95_ms": _num(r["p95_ms"]),
            }
            for r in latency
        ],
        "quality": [
            {
                "problem_type": r["problem_type"],
                "route": r["route"],
                "attempts": int(r["attempts"]),
                "ok": int(r["ok"]),
                "feasible": int(r["feasible"]),
                "feasible_rate": int(r["feasible"]) / int(r["ok"]) if r["ok"] else None,
                "mean_gap": _num(r["mean_gap"]),
                "at_best": int(r["at_best"]),
                "at_best_rate": int(r["at_best"]) / int(r["feasible"]) if r["feasible"] else None,
                "head_to_head": int(r["head_to_head"]),
            }
            for r in quality
        ],
        "race": [
            {
                "problem_type": r["problem_type"],
                "jobs": int(r["jobs"]),
                "mean_gap": _num(r["mean_gap"]),
            }
            for r in race
        ],
        "lag": {
            "available": lag is not None and lag.read_at is not None,
            "read_at": _iso(lag.read_at) if lag else None,
            "error": lag.error if lag else "lag is not read by this process",
            "groups": lag_groups,
            "thresholds": {
                "degrade_quantum_lag": thresholds.degrade_quantum_lag,
                "pause_low_priority_lag": thresholds.pause_low_priority_lag,
            },
        },
        "recent": [
            {
                "job_id": r["job_id"],
                "tenant": r["tenant"],
                "problem_type": r["problem_type"],
                "status": r["status"],
                "route": r["route"],
                "backend": r["backend"],
                "solver": r["solver"],
                "objective": _num(r["objective"]),
                "feasible": r["feasible"],
                "reason": r["reason"],
                "attempts": r["attempts"],
                "latency_ms": _num(r["latency_ms"]),
                "created_at": _iso(r["created_at"]),
                "completed_at": _iso(r["completed_at"]),
            }
            for r in recent
        ],
        "pending_approvals": [
            {
                "job_id": r["job_id"],
                "tenant": r["tenant"],
                "problem_type": r["problem_type"],
                "num_qubits": r["num_qubits"],
                "shots": r["shot_budget"],
                "waiting_since": _iso(r["status_at"]),
                "deadline_at": _iso(r["deadline_at"]),
            }
            for r in pending
        ],
    }
