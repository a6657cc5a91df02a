"""The call guard as an interceptor, without a server: what it hands gRPC for each call."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.service.admission import SolveGate
from qbridge.service.auth import Authenticator
from qbridge.service.guard import INLINE, CallGuard, call_arrival
from tests.unit.test_admission import Clock

SERVICE = "qbridge.gateway.v1.Gateway"
SOLVE = f"/{SERVICE}/Solve"


def refusal(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str, list[tuple[str, Any]]]:
    """Every refusal as PERMISSION_DENIED naming the error (the service chooses)."""
    return grpc.StatusCode.PERMISSION_DENIED, str(exc), [("why", type(exc).__name__)]


class Details(grpc.HandlerCallDetails):
    def __init__(self, md: tuple[tuple[str, str], ...], method: str = SOLVE) -> None:
        self.method = method
        self.invocation_metadata = md


class Aborted(Exception):
    pass


class Context:
    """The parts of a servicer context the guard's handlers use."""

    def __init__(self) -> None:
        self.trailing: Any = None

    def set_trailing_metadata(self, md: Any) -> None:
        self.trailing = md

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise Aborted(code, message)


def test_guard_refuses_unauthenticated_calls_with_a_handler_that_never_reads() -> None:
    parsed: list[bytes] = []

    def deserialize(data: bytes) -> Any:
        parsed.append(data)
        return pb.SolveRequest.FromString(data)

    handler = grpc.unary_unary_rpc_method_handler(
        lambda req, ctx: pb.SolveResponse(), request_deserializer=deserialize
    )
    guard = CallGuard(SERVICE, Authenticator({"k": "t"}), refusal)
    refused = guard.intercept_service(lambda d: handler, Details((("x-api-key", "bad"),)))
    assert refused is not None and refused is not handler
    # A request-streaming handler without a deserializer: gRPC hands it a lazy iterator
    # it never advances, so the request is neither received into memory nor parsed.
    assert refused.request_streaming and refused.request_deserializer is None
    assert refused.unary_unary is None and refused.stream_unary is not None
    context = Context()
    with pytest.raises(Aborted) as err:
        refused.stream_unary(iter(()), context)
    assert err.value.args[0] == grpc.StatusCode.PERMISSION_DENIED
    assert context.trailing == [("why", "UnauthenticatedError")]
    assert parsed == []
    admitted = guard.intercept_service(lambda d: handler, Details((("x-api-key", "k"),)))
    assert admitted is handler
    other = grpc.unary_unary_rpc_method_handler(lambda req, ctx: None)
    health = Details((), method="/grpc.health.v1.Health/Check")
    assert guard.intercept_service(lambda d: other, health) is other  # not guarded


def test_the_gated_method_holds_a_place_from_arrival_until_it_answered() -> None:
    clock = Clock()
    gate = SolveGate(initial=1, min_limit=1, max_limit=1, clock=clock)
    seen: list[tuple[int, float]] = []
    arrivals: list[float | None] = []

    def solve(request: pb.SolveRequest, context: Any) -> pb.SolveResponse:
        assert gate.inflight == 1  # the place is held while the call runs
        arrivals.append(call_arrival())
        clock.now += 0.25
        return pb.SolveResponse(deadline_ms=request.deadline_ms)

    def lateness(response: Any, elapsed_ms: float) -> float | None:
        seen.append((response.deadline_ms, elapsed_ms))
        return elapsed_ms - response.deadline_ms

    guard = CallGuard(
        SERVICE, Authenticator({"k": "t"}), refusal, gate=gate, lateness=lateness, clock=clock
    )
    handler = grpc.unary_unary_rpc_method_handler(solve)
    key = Details((("x-api-key", "k"),))
    arrived = clock.now
    gated = guard.intercept_service(lambda d: handler, key)
    assert gated is not None and gated.stream_unary is not None
    assert gate.inflight == 1  # taken as the call arrived, before a pool thread runs it
    clock.now += 0.05  # waiting for a pool thread counts against the deadline
    requests: Iterator[pb.SolveRequest] = iter([pb.SolveRequest(deadline_ms=100)])
    answer = gated.stream_unary(requests, Context())
    assert answer.deadline_ms == 100 and seen == [(100, pytest.approx(300.0))]
    assert arrivals == [arrived]
    assert gate.inflight == 0
    assert call_arrival() is None  # only inside the call's own context

    gate.enter()  # full: the next call is refused before its request is read
    refused = guard.intercept_service(lambda d: handler, key)
    assert refused is not None and refused.stream_unary is not None
    # Answered on the thread that received the call, not queued for a pool thread.
    assert getattr(refused.stream_unary, "experimental_thread_pool", None) is INLINE
    unread = iter([pb.SolveRequest(deadline_ms=100)])
    context = Context()
    with pytest.raises(Aborted) as err:
        refused.stream_unary(unread, context)
    assert err.value.args[0] == grpc.StatusCode.PERMISSION_DENIED
    assert context.trailing == [("why", "OverloadedError")]
    assert next(unread).deadline_ms == 100  # never taken from the stream
    gate.leave(duration_s=0.1, lateness_ms=None)
    empty = guard.intercept_service(lambda d: handler, key)
    assert empty is not None and empty.stream_unary is not None
    with pytest.raises(Aborted):  # no request at all: refused, the place is given back
        empty.stream_unary(iter(()), Context())
    assert gate.inflight == 0


def test_a_gated_call_grpc_never_runs_gives_its_place_back() -> None:
    gate = SolveGate(initial=2, min_limit=1, max_limit=2)
    guard = CallGuard(SERVICE, Authenticator({"k": "t"}), refusal, gate=gate)
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: pb.SolveResponse())
    gated = guard.intercept_service(lambda d: handler, Details((("x-api-key", "k"),)))
    assert gated is not None and gate.inflight == 1
    # gRPC refuses the call itself (its max_concurrent_rpcs) after the interceptor ran and
    # drops the handler: the place must not stay taken.
    del gated
    gc.collect()
    assert gate.inflight == 0
    ran = guard.intercept_service(lambda d: handler, Details((("x-api-key", "k"),)))
    assert ran is not None and ran.stream_unary is not None
    ran.stream_unary(iter([pb.SolveRequest()]), Context())
    assert gate.inflight == 0
    del ran
    gc.collect()
    assert gate.inflight == 0  # given back once, not twice


def test_inline_executor_runs_on_the_submitting_thread() -> None:
    ran: list[str] = []
    done = INLINE.submit(lambda: ran.append(threading.current_thread().name) or 7)
    assert done.result(timeout=0) == 7 and ran == [threading.current_thread().name]

    def fail() -> None:
        raise Aborted("refused")

    failed = INLINE.submit(fail)
    assert isinstance(failed.exception(timeout=0), Aborted)


class _ThreadRecordingMetadata(list[tuple[str, str]]):
    """Trailing metadata that notes which thread reads it (the one sending the refusal)."""

    def __init__(self, items: list[tuple[str, str]], seen: list[str]) -> None:
        super().__init__(items)
        self.seen = seen

    def __iter__(self) -> Iterator[tuple[str, str]]:
        self.seen.append(threading.current_thread().name)
        return super().__iter__()


def test_a_refusal_is_sent_by_the_receiving_thread_not_a_pool_thread() -> None:
    seen: list[str] = []

    def recording_refusal(
        exc: BaseException, method: str
    ) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            str(exc),
            _ThreadRecordingMetadata([("retry-after-ms", "100")], seen),
        )

    gate = SolveGate(initial=1, min_limit=1, max_limit=1)
    gate.enter()  # full: every Solve is refused
    guard = CallGuard(SERVICE, Authenticator({"k": "t"}), recording_refusal, gate=gate)
    handler = grpc.unary_unary_rpc_method_handler(
        lambda req, ctx: pb.SolveResponse(),
        request_deserializer=pb.SolveRequest.FromString,
        response_serializer=pb.SolveResponse.SerializeToString,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(2, thread_name_prefix="pool"), interceptors=[guard]
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Solve": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            solve = channel.unary_unary(
                SOLVE,
                request_serializer=pb.SolveRequest.SerializeToString,
                response_deserializer=pb.SolveResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as err:
                solve(pb.SolveRequest(), metadata=(("x-api-key", "k"),), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert dict(err.value.trailing_metadata())["retry-after-ms"] == "100"  # type: ignore[attr-defined]
        assert seen and not any(name.startswith("pool") for name in seen), seen
    finally:
        server.stop(0)
