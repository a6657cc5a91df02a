"""The ``qbridge`` command line: solve, submit, watch, get and list jobs through the gateway.

Examples::

    export QBRIDGE_TARGET=127.0.0.1:50051 QBRIDGE_API_KEY=demo-key
    python -m qbridge.cli solve examples/maxcut.json --deadline-ms 2000
    python -m qbridge.cli submit examples/jobshop.json --watch
    python -m qbridge.cli watch 4c0c1a8e-...
    python -m qbridge.cli jobs --status succeeded --limit 10
    python -m qbridge.cli --json get 4c0c1a8e-...

Exit codes: 0 answered (succeeded or degraded), 1 the job failed, expired or was
rejected, 2 usage or problem-file error, 3 the gateway refused the call (the gRPC
status and the offending field are printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from typing import Any, TextIO

import grpc
from google.protobuf.json_format import MessageToDict, MessageToJson

from qbridge.cli.files import ProblemFileError, load, options_message, problem_message
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qbridge.status import JobStatus

DEFAULT_TARGET = "127.0.0.1:50051"
ERROR_DETAIL_KEY = "qbridge-error-bin"
JOB_ID_KEY = "qbridge-job-id"
SOLVE_METHOD = "/qbridge.gateway.v1.Gateway/Solve"

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_RPC = 0, 1, 2, 3
_GOOD = (pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_DEGRADED)


def status_name(value: int) -> str:
    """``JOB_STATUS_RUNNING`` -> ``running``."""
    return pb.JobStatus.Name(value).removeprefix("JOB_STATUS_").lower()


def route_name(value: int) -> str:
    """``ROUTE_QUANTUM`` -> ``quantum`` (``-`` when unset)."""
    if value == pb.ROUTE_UNSPECIFIED:
        return "-"
    return pb.Route.Name(value).removeprefix("ROUTE_").lower()


def source_name(value: int) -> str:
    """``ANSWER_SOURCE_GATEWAY`` -> ``gateway``."""
    return pb.AnswerSource.Name(value).removeprefix("ANSWER_SOURCE_").lower()


def to_json(msg: Any) -> str:
    """A message as compact JSON with the proto field names."""
    return str(MessageToJson(msg, preserving_proto_field_name=True, indent=None))


def to_dict(msg: Any) -> dict[str, Any]:
    """A message as a dict with the proto field names."""
    return dict(MessageToDict(msg, preserving_proto_field_name=True))


# --- connection -----------------------------------------------------------------------------


class Client:
    """A gateway stub with the call metadata and timeouts of the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        """Open the channel (TLS when ``--tls``/``--ca-cert`` is given)."""
        if args.ca_cert or args.tls:
            ca = open(args.ca_cert, "rb").read() if args.ca_cert else None  # noqa: SIM115
            creds = grpc.ssl_channel_credentials(root_certificates=ca)
            options = []
            if args.tls_server_name:
                options.append(("grpc.ssl_target_name_override", args.tls_server_name))
            self.channel = grpc.secure_channel(args.target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(args.target)
        self.stub = pb_grpc.GatewayStub(self.channel)
        key = args.api_key or ""
        self.metadata: tuple[tuple[str, str], ...] = (("x-api-key", key),) if key else ()
        self.timeout: float | None = args.timeout

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


# --- rendering ------------------------------------------------------------------------------


def _assignment(values: Sequence[int], limit: int = 64) -> str:
    text = (
        "".join(str(v) for v in values) if all(v in (0, 1) for v in values) else str(list(values))
    )
    return text if len(values) <= limit else f"{text[:limit]}... ({len(values)} values)"


def render_result(result: pb.Result, out: TextIO) -> None:
    """Human-readable result lines."""
    print(f"status     {status_name(result.status)}", file=out)
    print(f"route      {route_name(result.route)}", file=out)
    if result.reason:
        print(f"reason     {result.reason}", file=out)
    if result.HasField("solution"):
        s = result.solution
        feasible = "feasible" if s.feasible else "INFEASIBLE"
        print(f"objective  {s.objective:g} ({feasible})", file=out)
        print(f"assignment {_assignment(list(s.assignment))}", file=out)
    q = result.quality
    extras = []
    if q.proven_optimal:
        extras.append("proven optimal")
    if q.HasField("gap"):
        extras.append(f"gap {q.gap:.3g}")
    if q.HasField("confidence"):
        extras.append(f"confidence {q.confidence:.3g}")
    if extras:
        print(f"quality    {', '.join(extras)}", file=out)
    if result.HasField("provenance"):
        p = result.provenance
        print(f"solver     {p.solver} on {p.backend}", file=out)
    if len(result.candidates) > 1:
        print(f"candidates {len(result.candidates)}", file=out)


class Progress:
    """Status transitions as they stream, with the elapsed time (on stderr)."""

    def __init__(self, out: TextIO, started: float | None = None, enabled: bool = True) -> None:
        """Print to ``out`` (normally stderr); times are relative to ``started``."""
        self.out = out
        self.started = started if started is not None else time.monotonic()
        self.enabled = enabled
        self.tty = enabled and out.isatty()
        self._lock = threading.Lock()
        self._ticker_on = False

    def elapsed(self) -> float:
        """Seconds since start."""
        return time.monotonic() - self.started

    def transition(self, t: pb.StatusTransition) -> None:
        """One line per transition."""
        if not self.enabled:
            return
        where = ""
        if t.route != pb.ROUTE_UNSPECIFIED:
            where = f" [{route_name(t.route)}{' ' + t.backend if t.backend else ''}]"
        reason = f": {t.reason}" if t.reason else ""
        self.line(f"{status_name(t.to_status):<9}{where}{reason}")

    def line(self, text: str) -> None:
        """A progress line prefixed with the elapsed time."""
        if not self.enabled:
            return
        with self._lock:
            clear = "\r\033[K" if self._ticker_on else ""
            self._ticker_on = False
            print(f"{clear}  +{self.elapsed():6.2f}s  {text}", file=self.out, flush=True)

    def tick(self, text: str) -> None:
        """Overwrite a status line in place (terminals only)."""
        if not self.tty:
            return
        with self._lock:
            self._ticker_on = True
            print(f"\r\033[K  {text}", end="", file=self.out, flush=True)

    def done(self) -> None:
        """End the ticker line."""
        if self.tty and self._ticker_on:
            with self._lock:
                print("\r\033[K", end="", file=self.out, flush=True)
                self._ticker_on = False


# --- commands -------------------------------------------------------------------------------


def _options(args: argparse.Namespace, doc: dict[str, Any]) -> pb.JobOptions:
    options = dict(doc.get("options") or {})
    for name, key in (
        ("policy", "fallback_policy"),
        ("priority", "priority"),
        ("key", "idempotency_key"),
        ("backend", "backend"),
        ("seed", "seed"),
        ("timeout_ms", "timeout_ms"),
    ):
        value = getattr(args, name, None)
        if value is not None:
            options[key] = value
    for tag in getattr(args, "tag", None) or []:
        k, sep, v = tag.partition("=")
        if not sep:
            raise ProblemFileError(f"--tag must be KEY=VALUE, got {tag!r}")
        options.setdefault("tags", {})[k] = v
    return options_message(options)


def _watch_thread(
    client: Client, job_id: str, progress: Progress, stop: threading.Event
) -> threading.Thread:
    def follow() -> None:
        try:
            stream = client.stub.WatchJob(
                pb.WatchJobRequest(job_id=job_id), metadata=client.metadata
            )
            for update in stream:
                if stop.is_set():
                    stream.cancel()
                    return
                progress.transition(update.transition)
                if update.final:
                    return
                if stop.is_set():
                    stream.cancel()
                    return
        except grpc.RpcError:
            return  # progress is best effort; the answer comes from Solve

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    return t


def cmd_solve(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``solve FILE --deadline-ms N``."""
    doc = load(args.file)
    request = pb.SolveRequest(
        problem=problem_message(doc, typed=args.typed),
        deadline_ms=args.deadline_ms,
        options=_options(args, doc),
    )
    progress = Progress(err, enabled=not args.quiet and not args.json)
    # The gRPC deadline leaves a margin over the answer budget so the answer can arrive.
    timeout = client.timeout or (args.deadline_ms / 1000.0 + 5.0 if args.deadline_ms else None)
    # Solve is unary; invoked as unary-stream (same bytes on the wire), gRPC hands over the
    # response headers, which carry the job id, before the answer: progress can start at once.
    solve = client.channel.unary_stream(
        SOLVE_METHOD,
        request_serializer=pb.SolveRequest.SerializeToString,
        response_deserializer=pb.SolveResponse.FromString,
    )
    call = solve(request, metadata=client.metadata, timeout=timeout)
    stop = threading.Event()
    watcher = None
    with futures.ThreadPoolExecutor(1) as executor:
        answer = executor.submit(next, call)
        try:
            job_id = dict(call.initial_metadata() or ()).get(JOB_ID_KEY)
            if job_id and not answer.done():
                budget = args.deadline_ms or "server default"
                progress.line(f"job {job_id} (deadline {budget} ms)")
                watcher = _watch_thread(client, str(job_id), progress, stop)
            while not answer.done():
                budget_s = f" / {args.deadline_ms / 1000:.1f}s" if args.deadline_ms else ""
                progress.tick(f"solving... {progress.elapsed():.1f}s{budget_s}")
                futures.wait([answer], timeout=0.1)
            response: pb.SolveResponse = answer.result()
        finally:
            stop.set()
            progress.done()
    if watcher is not None:
        watcher.join(0.2)
    if args.json:
        print(to_json(response), file=out)
    else:
        print(f"job        {response.job_id}", file=out)
        print(
            f"answered   by {source_name(response.source)} in {response.elapsed_ms:.0f} ms "
            f"(deadline {response.deadline_ms} ms; "
            f"pipeline job {status_name(response.job_status)})",
            file=out,
        )
        render_result(response.result, out)
    return EXIT_OK if response.result.status in _GOOD else EXIT_JOB_FAILED


def cmd_submit(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``submit FILE [--watch]``."""
    doc = load(args.file)
    request = pb.SubmitRequest(
        problem=problem_message(doc, typed=args.typed), options=_options(args, doc)
    )
    response: pb.SubmitResponse = client.stub.Submit(
        request, metadata=client.metadata, timeout=client.timeout or 30.0
    )
    if args.json:
        print(to_json(response), file=out)
    else:
        print(response.job_id, file=out)
    if args.watch:
        return _watch(client, response.job_id, args, out, err)
    return EXIT_OK


def _watch(client: Client, job_id: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    progress = Progress(err if not args.json else out, enabled=not args.quiet and not args.json)
    stream = client.stub.WatchJob(
        pb.WatchJobRequest(job_id=job_id, after_seq=getattr(args, "after_seq", 0) or 0),
        metadata=client.metadata,
        timeout=client.timeout,
    )
    final: pb.JobUpdate | None = None
    for update in stream:
        if args.json:
            print(to_json(update), file=out, flush=True)
        else:
            progress.transition(update.transition)
        if update.final:
            final = update
            break
    if final is None:
        return EXIT_OK
    if not args.json:
        if final.HasField("result"):
            render_result(final.result, out)
        else:
            print(f"status     {status_name(final.transition.to_status)}", file=out)
    status = final.result.status if final.HasField("result") else final.transition.to_status
    return EXIT_OK if status in _GOOD else EXIT_JOB_FAILED


def cmd_watch(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``watch JOB``."""
    return _watch(client, args.job_id, args, out, err)


def cmd_get(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``get JOB``."""
    job: pb.Job = client.stub.GetJob(
        pb.GetJobRequest(
            job_id=args.job_id, include_transitions=True, include_attempts=args.attempts
        ),
        metadata=client.metadata,
        timeout=client.timeout or 10.0,
    )
    if args.json:
        print(to_json(job), file=out)
        return EXIT_OK
    print(f"job        {job.job_id}  ({job.problem_type}, tenant {job.tenant})", file=out)
    print(f"policy     {job.fallback_policy or '-'}, priority {job.priority}", file=out)
    if job.rejection_reason:
        print(f"rejected   {job.rejection_reason}", file=out)
    for t in job.transitions:
        when = t.at.ToDatetime().strftime("%H:%M:%S.%f")[:-3] if t.HasField("at") else ""
        where = f" [{route_name(t.route)} {t.backend}]" if t.route else ""
        print(f"  {t.seq:>3} {when} {status_name(t.to_status):<9}{where} {t.reason}", file=out)
    for a in job.attempts:
        obj = f" objective {a.objective:g}" if a.HasField("objective") else ""
        err_text = f" {a.error_class}: {a.error_message}" if a.error_class else ""
        print(
            f"  attempt {a.attempt} {route_name(a.route)} {a.backend} {a.status}"
            f"{obj} {a.duration_ms:.0f} ms{err_text}",
            file=out,
        )
    if job.HasField("result"):
        render_result(job.result, out)
    else:
        print(f"status     {status_name(job.status)}", file=out)
    return EXIT_OK


def cmd_jobs(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``jobs [--status S] [--type T] [--limit N]``."""
    statuses = [pb.JobStatus.Value(f"JOB_STATUS_{s.upper()}") for s in args.status or []]
    response: pb.ListJobsResponse = client.stub.ListJobs(
        pb.ListJobsRequest(
            page_size=args.limit,
            page_token=args.page_token or "",
            statuses=statuses,
            problem_type=args.type or "",
        ),
        metadata=client.metadata,
        timeout=client.timeout or 10.0,
    )
    return _print_jobs(response, args, out)


def _print_jobs(response: pb.ListJobsResponse, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        print(to_json(response), file=out)
        return EXIT_OK
    print(
        f"{'JOB':<36}  {'TYPE':<9} {'STATUS':<9} {'ROUTE':<9} {'OBJECTIVE':>11}  CREATED", file=out
    )
    for j in response.jobs:
        obj = f"{j.objective:11.6g}" if j.HasField("objective") else f"{'-':>11}"
        created = (
            j.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
            if j.HasField("created_at")
            else ""
        )
        print(
            f"{j.job_id:<36}  {j.problem_type:<9} {status_name(j.status):<9} "
            f"{route_name(j.route):<9} {obj}  {created}",
            file=out,
        )
    if response.next_page_token:
        print(f"(more: --page-token {response.next_page_token})", file=out)
    return EXIT_OK


def cmd_pending(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``pending [--limit N]``: jobs awaiting approval (approver keys only)."""
    response: pb.ListJobsResponse = client.stub.ListPending(
        pb.ListPendingRequest(page_size=args.limit, page_token=args.page_token or ""),
        metadata=client.metadata,
        timeout=client.timeout or 10.0,
    )
    return _print_jobs(response, args, out)


def _decide(client: Client, args: argparse.Namespace, out: TextIO, approve: bool) -> int:
    request = pb.ApprovalRequest(job_id=args.job_id, comment=args.comment or "")
    call = client.stub.Approve if approve else client.stub.Reject
    response: pb.ApprovalResponse = call(
        request, metadata=client.metadata, timeout=client.timeout or 10.0
    )
    if args.json:
        print(to_json(response), file=out)
    else:
        verb = "approved" if approve else "rejected"
        print(f"{response.job_id} {verb} by {response.reviewer}", file=out)
    return EXIT_OK


def cmd_approve(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``approve JOB [--comment TEXT]``: let the job's quantum attempt run."""
    return _decide(client, args, out, approve=True)


def cmd_reject(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``reject JOB [--comment TEXT]``: answer the job classically instead."""
    return _decide(client, args, out, approve=False)


COMMANDS: dict[str, Callable[[Client, argparse.Namespace, TextIO, TextIO], int]] = {
    "solve": cmd_solve,
    "submit": cmd_submit,
    "watch": cmd_watch,
    "get": cmd_get,
    "jobs": cmd_jobs,
    "pending": cmd_pending,
    "approve": cmd_approve,
    "reject": cmd_reject,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="qbridge",
        description="Command-line client of the qbridge gRPC gateway.",
        epilog="Problem files: see examples/README.md.",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("QBRIDGE_TARGET", DEFAULT_TARGET),
        help="gateway host:port (env QBRIDGE_TARGET, default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("QBRIDGE_API_KEY"),
        help="API key (env QBRIDGE_API_KEY)",
    )
    parser.add_argument("--tls", action="store_true", help="TLS with the system's CA roots")
    parser.add_argument(
        "--ca-cert",
        default=os.environ.get("QBRIDGE_CA_CERT"),
        help="TLS with this CA bundle (PEM; env QBRIDGE_CA_CERT)",
    )
    parser.add_argument("--tls-server-name", help="expected server name in its certificate")
    parser.add_argument("--timeout", type=float, help="gRPC deadline of the call in seconds")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    sub = parser.add_subparsers(dest="command", required=True)

    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", help="problem file (JSON; - for stdin)")
        p.add_argument("--policy", help="fallback policy (auto, race, classical_only, ...)")
        p.add_argument("--priority", type=int, help="0 (lowest) .. 9")
        p.add_argument("--key", help="idempotency key")
        p.add_argument("--backend", help="preferred quantum backend")
        p.add_argument("--seed", type=int, help="seed for reproducible solving")
        p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="add a tag")
        p.add_argument(
            "--typed", action="store_true", help="send the typed message instead of JSON"
        )

    p = sub.add_parser("solve", help="answer within a deadline (best available answer)")
    job_options(p)
    p.add_argument("--deadline-ms", type=int, default=0, help="answer budget in ms")
    p = sub.add_parser("submit", help="submit a job, print its id")
    job_options(p)
    p.add_argument("--timeout-ms", type=int, help="job time budget")
    p.add_argument("--watch", action="store_true", help="then follow it until final")
    p = sub.add_parser("watch", help="stream a job's status transitions until final")
    p.add_argument("job_id")
    p.add_argument("--after-seq", type=int, default=0, help="resume after this transition")
    p = sub.add_parser("get", help="show a job with its transitions and result")
    p.add_argument("job_id")
    p.add_argument("--attempts", action="store_true", help="include solver attempts")
    p = sub.add_parser("jobs", help="list your jobs, newest first")
    p.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in JobStatus],
        help="only this status (repeatable)",
    )
    p.add_argument("--type", help="only this problem type")
    p.add_argument("--limit", type=int, default=20, help="page size (max 200)")
    p.add_argument("--page-token", help="next page (from a previous listing)")
    p = sub.add_parser("pending", help="list jobs awaiting approval (approver keys)")
    p.add_argument("--limit", type=int, default=20, help="page size (max 200)")
    p.add_argument("--page-token", help="next page (from a previous listing)")
    for name, what in (
        ("approve", "let its quantum attempt run"),
        ("reject", "answer it classically"),
    ):
        p = sub.add_parser(name, help=f"{name} a job awaiting approval: {what} (approver keys)")
        p.add_argument("job_id")
        p.add_argument("--comment", help="why (kept in the audit trail)")
    return parser


def rpc_error(exc: grpc.RpcError, err: TextIO) -> int:
    """Print a refused call with its status, field and retry hint."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    name = code.name if code is not None else "ERROR"
    print(f"error: {name}: {details}", file=err)
    trailing: Iterable[tuple[str, Any]] = ()
    if isinstance(exc, grpc.Call):
        trailing = exc.trailing_metadata() or ()
    for key, value in trailing:
        if key == ERROR_DETAIL_KEY and isinstance(value, bytes):
            detail = pb.ErrorDetail.FromString(value)
            if detail.field:
                print(f"  field: {detail.field}", file=err)
            if detail.retry_after_ms:
                print(f"  retry after {detail.retry_after_ms} ms", file=err)
    return EXIT_RPC


def main(
    argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Run one command; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    client = Client(args)
    try:
        return COMMANDS[args.command](client, args, out, err)
    except ProblemFileError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except grpc.RpcError as exc:
        return rpc_error(exc, err)
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    finally:
        client.close()
