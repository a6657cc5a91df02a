"""Command line: ``serve`` (default), ``migrate``, ``results``, ``costs``, ``replay``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from qbridge.db.pool import make_pool
from qbridge.errors import StoreUnavailableError
from qbridge.results.read import JobReader
from results_sink.config import ResultsSinkSettings
from results_sink.store import ResultsStore

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m results_sink``."""
    parser = argparse.ArgumentParser(
        prog="python -m results_sink",
        description="qbridge results sink: Kafka outcomes and transitions into PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="consume and store (the default)")

    def db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--database-url", help="libpq URL (default: $DATABASE_URL)")
        return p

    db(sub.add_parser("migrate", help="apply pending schema migrations and exit"))
    results = db(sub.add_parser("results", help="print the latest jobs and their results"))
    results.add_argument("--limit", type=int, default=20, help="rows (default 20)")
    results.add_argument("--tenant", help="only this tenant")
    results.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    costs = db(sub.add_parser("costs", help="print cost units per tenant and route"))
    costs.add_argument("--tenant", action="append", help="only these tenants (repeatable)")
    costs.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    replay = db(sub.add_parser("replay", help="re-solve a stored job and compare (exit 0 = same)"))
    replay.add_argument("job_id")
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def database_url(args: argparse.Namespace) -> str:
    """``--database-url`` or the configured one."""
    url = getattr(args, "database_url", None)
    return str(url) if url else ResultsSinkSettings().database_url


@contextlib.contextmanager
def open_store(url: str) -> Iterator[ResultsStore]:
    """A store on a small pool, closed afterwards."""
    pool = make_pool(
        url, min_size=1, max_size=2, timeout_s=10.0, application_name="qbridge-results-cli"
    )
    try:
        yield ResultsStore(pool)
    finally:
        pool.close()


# --- formatting -----------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Fixed-width table of ``rows`` with ``(key, header)`` columns."""
    cells = [[_cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, (_, h) in enumerate(columns)]
    numeric = {"objective", "attempts", "latency_ms", "cost_units", "jobs"}
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append(
            "  ".join(
                (v.rjust(w) if k in numeric else v.ljust(w))
                for (k, _), v, w in zip(columns, c, widths, strict=True)
            ).rstrip()
        )
    return "\n".join(lines)


RESULT_COLUMNS = (
    ("job_id", "job"),
    ("tenant", "tenant"),
    ("problem_type", "type"),
    ("status", "status"),
    ("route", "route"),
    ("objective", "objective"),
    ("feasible", "feasible"),
    ("attempts", "attempts"),
    ("latency_ms", "latency_ms"),
)
COST_COLUMNS = (
    ("tenant", "tenant"),
    ("route", "route"),
    ("jobs", "jobs"),
    ("attempts", "attempts"),
    ("cost_units", "cost_units"),
)


def _json_line(row: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(row, default=str) + "\n")


# --- commands -------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Apply pending migrations."""
    from results_sink.migrate import migrate

    applied = migrate(database_url(args))
    for m in applied:
        out.write(f"applied {m.version:04d}_{m.name}\n")
    if not applied:
        out.write("schema up to date\n")
    return EXIT_OK


def cmd_results(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print the results table."""
    with open_store(database_url(args)) as store:
        rows = JobReader(store.pool).recent(limit=args.limit, tenant=args.tenant)
    for r in rows:
        if r.get("latency_ms") is not None:
            r["latency_ms"] = round(float(r["latency_ms"]))
    if args.json:
        for r in rows:
            _json_line(r, out)
    else:
        out.write(format_table(rows, RESULT_COLUMNS) + "\n")
        out.write(f"({len(rows)} job{'s' if len(rows) != 1 else ''})\n")
    return EXIT_OK


def cmd_costs(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print cost units per tenant."""
    with open_store(database_url(args)) as store:
        rows = store.tenant_costs(args.tenant)
    if args.json:
        for r in rows:
            _json_line(r, out)
    else:
        out.write(format_table(rows, COST_COLUMNS) + "\n")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Replay a job: exit 0 if the answer is the same, 1 if not, 2 if it cannot be replayed."""
    from results_sink.replay import ReplayError, format_report, replay

    try:
        with open_store(database_url(args)) as store:
            result = replay(store, args.job_id)
    except ReplayError as exc:
        if args.json:
            _json_line({"job_id": args.job_id, "error": str(exc)}, out)
        else:
            sys.stderr.write(f"cannot replay: {exc}\n")
        return EXIT_ERROR
    if args.json:
        _json_line(result.to_dict(), out)
    else:
        out.write(format_report(result) + "\n")
    return EXIT_OK if result.matches else EXIT_MISMATCH


COMMANDS = {
    "migrate": cmd_migrate,
    "results": cmd_results,
    "costs": cmd_costs,
    "replay": cmd_replay,
}


def run_command(args: argparse.Namespace) -> int:
    """Run a one-shot command; a database outage is a clean error, not a traceback."""
    try:
        return COMMANDS[args.command](args)
    except StoreUnavailableError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
