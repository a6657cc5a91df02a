"""The dashboard page: one self-contained HTML document (inline CSS and SVG, no scripts)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape
from typing import Any

from qbridge.dashboard import charts
from qbridge.dashboard.charts import Bar, Marker, Series
from qbridge.status import JobStatus

QUANTUM = "#6f42c1"
CLASSICAL = "#1f9e89"
DEGRADED = "#e8a33d"
FAILED = "#d64545"
NEUTRAL = "#7b8794"
STATUS_COLORS: dict[str, str] = {
    JobStatus.SUCCEEDED: CLASSICAL,
    JobStatus.DEGRADED: DEGRADED,
    JobStatus.FAILED: FAILED,
    JobStatus.EXPIRED: NEUTRAL,
}
DASH = "\u2013"  # shown for missing values
WINDOWS = (("15 min", 15), ("1 h", 60), ("6 h", 360), ("24 h", 1440))

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6fa;color:#1f2933;font:14px system-ui,'DejaVu Sans',sans-serif}
header{background:#1f2933;color:#fff;padding:14px 24px;display:flex;align-items:baseline;gap:18px}
header h1{font-size:20px;margin:0}
header .meta{color:#c4cbd6;font-size:12px}
header nav a{color:#9fb3ff;margin-right:10px;text-decoration:none}
header nav a.on{color:#fff;font-weight:600;text-decoration:underline}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(2,minmax(540px,1fr));gap:16px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.08);padding:12px 16px}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{flex:1;min-width:150px;background:#f8f9fc;border-radius:6px;padding:10px 12px}
.kpi .v{font-size:24px;font-weight:600}
.kpi .l{color:#52606d;font-size:12px}
.note{color:#52606d;font-size:12px;margin:6px 0 0}
.error{background:#fde8e8;color:#9b1c1c;padding:8px 12px;border-radius:6px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e6e9ef;white-space:nowrap}
td.reason{white-space:normal;max-width:360px;color:#52606d}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pill{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:11px}
"""


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _num(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


def _short_time(iso: str | None) -> str:
    if not iso:
        return DASH
    try:
        return datetime.fromisoformat(iso).strftime("%H:%M:%S")
    except ValueError:
        return escape(iso)


def _route_color(route: str | None) -> str:
    return QUANTUM if route == "quantum" else CLASSICAL if route == "classical" else NEUTRAL


def _kpis(s: Mapping[str, Any]) -> str:
    t = s["totals"]
    lag = s["lag"]
    max_lag = max((g["total"] for g in lag["groups"]), default=None)
    p95 = max((r["p95_ms"] or 0 for r in s["latency"]), default=None) if s["latency"] else None
    tiles = [
        (str(t["jobs"]), "jobs seen"),
        (str(t["final"]), "final answers"),
        (_pct(t["fallback_rate"]), "fallback rate (degraded)"),
        (_pct(t["quantum_answers"] / t["final"] if t["final"] else None), "answered by quantum"),
        (_ms(p95), "worst route p95 latency"),
        (DASH if max_lag is None else str(max_lag), "max consumer lag (msgs)"),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"><div class="v">{escape(v)}</div><div class="l">{escape(lbl)}</div>'
            "</div>"
            for v, lbl in tiles
        )
        + "</div>"
    )


def _timeline(s: Mapping[str, Any]) -> str:
    buckets = s["fallback"]["series"]
    labels = [_short_time(b["start"]) for b in buckets]
    return charts.stacked_timeline(
        labels,
        [
            Series("quantum", QUANTUM, [b["quantum"] for b in buckets]),
            Series("classical", CLASSICAL, [b["classical"] for b in buckets]),
            Series("degraded", DEGRADED, [b["degraded"] for b in buckets]),
            Series("failed/expired", FAILED, [b["failed"] for b in buckets]),
        ],
        title="final answers over time",
        rate=[b["fallback_rate"] for b in buckets],
        rate_name="fallback rate",
    )


def _routes(s: Mapping[str, Any]) -> str:
    agg: dict[tuple[str, str], int] = {}
    for r in s["routes"]:
        key = (r["route"], r["backend"])
        agg[key] = agg.get(key, 0) + r["jobs"]
    bars = [
        Bar(f"{route} · {backend}", n, _route_color(route))
        for (route, backend), n in sorted(agg.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return charts.hbars(bars, title="routes taken")


def _statuses(s: Mapping[str, Any]) -> str:
    bars = [
        Bar(status, n, STATUS_COLORS.get(status, NEUTRAL))
        for status, n in s["totals"]["by_status"].items()
    ]
    return charts.hbars(bars, title="jobs by status", label_width=120)


def _reasons(s: Mapping[str, Any]) -> str:
    bars = [Bar(r["reason"], r["jobs"], DEGRADED) for r in s["fallback"]["reasons"][:8]]
    return charts.hbars(bars, title="fallback reasons", label_width=300)


def _lag(s: Mapping[str, Any]) -> str:
    lag = s["lag"]
    th = lag["thresholds"]
    parts = []
    if lag["error"]:
        parts.append(f'<p class="error">lag: {escape(lag["error"])}</p>')
    groups = {g["group"]: g["total"] for g in lag["groups"]}
    bars = [
        Bar(name.removeprefix("qbridge-"), total, QUANTUM if "quantum" in name else CLASSICAL)
        for name, total in groups.items()
    ]
    executors = [v for k, v in groups.items() if "quantum" in k or "classical" in k]
    if executors:
        bars.append(Bar("executors total", sum(executors), NEUTRAL))
    markers = [
        Marker(th["degrade_quantum_lag"], f"degrade quantum > {th['degrade_quantum_lag']}", FAILED),
    ]
    hi = max([b.value for b in bars], default=0)
    if hi > th["degrade_quantum_lag"]:
        markers.append(
            Marker(
                th["pause_low_priority_lag"],
                f"pause low priority > {th['pause_low_priority_lag']}",
                DEGRADED,
            )
        )
    parts.append(charts.hbars(bars, title="consumer lag", markers=markers, label_width=150))
    return "".join(parts)


def _quality(s: Mapping[str, Any]) -> str:
    rows = s["quality"]
    classes = sorted({r["problem_type"] for r in rows})
    by = {(r["problem_type"], r["route"]): r for r in rows}

    def values(route: str, key: str) -> list[float | None]:
        return [by[(c, route)][key] if (c, route) in by else None for c in classes]

    notes = [
        "n="
        + "/".join(
            str(by[(c, route)]["feasible"]) if (c, route) in by else "0"
            for route in ("quantum", "classical")
        )
        for c in classes
    ]
    gap = charts.grouped_columns(
        classes,
        [
            Series("quantum", QUANTUM, values("quantum", "mean_gap")),
            Series("classical", CLASSICAL, values("classical", "mean_gap")),
        ],
        title="mean relative gap to the best known answer (lower is better)",
        unit="%",
        notes=notes,
        min_top=0.04,
    )
    best = charts.grouped_columns(
        classes,
        [
            Series("quantum", QUANTUM, values("quantum", "at_best_rate")),
            Series("classical", CLASSICAL, values("classical", "at_best_rate")),
        ],
        title="share of answers at the best known objective",
        unit="%",
        notes=notes,
    )
    return (
        '<div style="display:flex;gap:12px;flex-wrap:wrap">'
        f'<div><h3 class="note">mean gap to best known (lower is better)</h3>{gap}</div>'
        f'<div><h3 class="note">share at best known (higher is better)</h3>{best}</div></div>'
    )


def _latency(s: Mapping[str, Any]) -> str:
    bars = []
    for r in s["latency"]:
        color = _route_color(r["route"])
        if r["p50_ms"] is not None:
            bars.append(Bar(f"{r['route']} p50", r["p50_ms"] / 1000, color))
        if r["p95_ms"] is not None:
            bars.append(Bar(f"{r['route']} p95", r["p95_ms"] / 1000, color, f"  (n={r['jobs']})"))
    return charts.hbars(bars, title="end-to-end latency", unit=" s", label_width=140)


def _recent(s: Mapping[str, Any]) -> str:
    head = (
        "<tr><th>job</th><th>tenant</th><th>problem</th><th>status</th><th>route</th>"
        "<th>backend</th><th>objective</th><th>feasible</th><th>attempts</th>"
        "<th>latency</th><th>finished</th><th>reason</th></tr>"
    )
    rows = []
    for j in s["recent"]:
        status = j["status"] or "pending"
        rows.append(
            "<tr>"
            f'<td title="{escape(j["job_id"])}">{escape(j["job_id"][:12])}</td>'
            f"<td>{_num(j['tenant'])}</td><td>{_num(j['problem_type'])}</td>"
            f'<td><span class="pill" style="background:{STATUS_COLORS.get(status, NEUTRAL)}">'
            f"{escape(status)}</span></td>"
            f'<td style="color:{_route_color(j["route"])}">{_num(j["route"])}</td>'
            f"<td>{_num(j['backend'])}</td>"
            f'<td class="num">{_num(j["objective"])}</td>'
            f"<td>{DASH if j['feasible'] is None else ('yes' if j['feasible'] else 'no')}</td>"
            f'<td class="num">{_num(j["attempts"])}</td>'
            f'<td class="num">{_ms(j["latency_ms"])}</td>'
            f"<td>{_short_time(j['completed_at'])}</td>"
            f'<td class="reason">{_num(j["reason"])}</td>'
            "</tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="12">no jobs yet</td></tr>')
    return f'<table id="recent-jobs">{head}{"".join(rows)}</table>'


def _pending(s: Mapping[str, Any]) -> str:
    head = (
        "<tr><th>job</th><th>tenant</th><th>problem</th><th>qubits</th><th>shots</th>"
        "<th>waiting since</th><th>deadline</th></tr>"
    )
    rows = [
        "<tr>"
        f'<td title="{escape(j["job_id"])}">{escape(j["job_id"][:12])}</td>'
        f"<td>{_num(j['tenant'])}</td><td>{_num(j['problem_type'])}</td>"
        f'<td class="num">{_num(j["num_qubits"])}</td><td class="num">{_num(j["shots"])}</td>'
        f"<td>{_short_time(j['waiting_since'])}</td><td>{_short_time(j['deadline_at'])}</td>"
        "</tr>"
        for j in s.get("pending_approvals", [])
    ]
    if not rows:
        rows.append('<tr><td colspan="7">no job awaits approval</td></tr>')
    return f'<table id="pending-approvals">{head}{"".join(rows)}</table>'


def render_page(
    summary: Mapping[str, Any] | None,
    *,
    window_min: int,
    refresh_s: int,
    error: str | None = None,
) -> str:
    """The whole HTML page for ``summary`` (or an error page if it is ``None``)."""
    nav = "".join(
        f'<a class="{"on" if minutes == window_min else ""}" '
        f'href="?window={minutes}&amp;refresh={refresh_s}">{label}</a>'
        for label, minutes in WINDOWS
    )
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s > 0 else ""
    generated = escape(summary["generated_at"]) if summary else DASH
    head = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>qbridge dashboard</title>{refresh}<style>{_CSS}</style></head><body>"
        '<header><h1>qbridge</h1><span class="meta">operations dashboard · data at '
        f"{generated} · window</span><nav>{nav}</nav>"
        '<span class="meta"><a href="/api/summary" style="color:#9fb3ff">JSON</a></span>'
        "</header>"
    )
    if summary is None:
        return (
            head
            + '<main><section class="wide"><h2>results database unavailable</h2>'
            + f'<p class="error">{escape(error or "unknown error")}</p></section></main>'
            + "</body></html>"
        )
    q = summary["quality"]
    h2h = sum(r["head_to_head"] for r in q)
    body = [
        '<main><section class="wide" id="kpis">',
        _kpis(summary),
        "</section>",
        '<section class="wide" id="timeline"><h2>Final answers over time (fallback rate line)</h2>',
        _timeline(summary),
        "</section>",
        '<section id="routes"><h2>Routes taken</h2>',
        _routes(summary),
        _statuses(summary),
        "</section>",
        '<section id="fallback"><h2>Fallback: '
        f"{escape(_pct(summary['fallback']['rate']))} of "
        f"{summary['fallback']['final']} final answers degraded</h2>",
        _reasons(summary),
        "</section>",
        '<section id="lag"><h2>Consumer lag (messages, read from Kafka)</h2>',
        _lag(summary),
        '<p class="note">The orchestrator degrades new quantum work above the quantum-executor '
        "line and defers low-priority admission above the executors-total line; KEDA scales "
        "the executors well below both.</p></section>",
        '<section id="latency"><h2>Latency (accepted → final answer)</h2>',
        _latency(summary),
        "</section>",
        '<section class="wide" id="quality"><h2>Quantum vs classical quality per problem class'
        "</h2>",
        _quality(summary),
        '<p class="note">Per answer (attempt that returned a feasible solution): relative gap '
        "(best - objective) / max(1, |best|) in the problem's own sense, where best is the best "
        "feasible objective any route found for the same instance (input fingerprint). "
        f"n = feasible answers quantum/classical; {h2h} answers are head-to-head "
        "(instances answered by both routes, e.g. race mode).</p></section>",
        '<section class="wide" id="approvals"><h2>Awaiting approval</h2>',
        _pending(summary),
        '<p class="note">Approve or reject with <code>qbridge approve|reject JOB</code> '
        "(approver API keys).</p></section>",
        '<section class="wide" id="recent"><h2>Recent jobs</h2>',
        _recent(summary),
        "</section></main></body></html>",
    ]
    return head + "".join(body)
