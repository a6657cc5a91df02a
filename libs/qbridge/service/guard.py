"""A gRPC server interceptor that admits calls from their metadata, before a request is read.

For every call of the guarded service (others, such as health and reflection, pass
through), from the call's metadata only:

1. the API key is checked (:class:`~qbridge.service.auth.UnauthenticatedError`);
2. the tenant's token bucket for the method is charged
   (:class:`~qbridge.service.admission.TenantRateLimiter`);
3. a call of the gated method takes a place in the
   :class:`~qbridge.service.admission.SolveGate` before its request is read (refused
   at once if full), given back with how late it answered.

All three run on gRPC's polling thread as the call arrives. A refused call is answered
there too, by a handler that never reads the request and runs *inline* instead of on the
server's thread pool (:data:`INLINE`): a refusal does not wait for a pool thread to be
scheduled (on a loaded machine that wait was 5-60 ms), gRPC core does not buffer the
request past the flow-control window and nothing deserializes it. How a refusal is told
to the caller (status code, message, trailing metadata) is the service's :data:`Refusal`
function. An admitted call of the gated method sees when it arrived through
:func:`call_arrival`, so its deadline can be counted from then.
"""

from __future__ import annotations

import contextvars
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from qbridge.service.admission import OverloadedError, SolveGate, TenantRateLimiter
from qbridge.service.auth import Authenticator, UnauthenticatedError

logger = logging.getLogger(__name__)

Refusal = Callable[[BaseException, str], tuple[grpc.StatusCode, str, Sequence[tuple[str, Any]]]]
"""``(error, method) -> (code, message, trailing metadata)`` of a refused call."""
Lateness = Callable[[Any, float], float | None]
"""``(response, elapsed_ms) -> ms past the call's deadline`` (None: not a timed answer)."""


_ARRIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "qbridge_call_arrived", default=None
)


def call_arrival() -> float | None:
    """When the current call of the gated method arrived (``clock`` seconds), else None.

    Set for the behavior of an admitted gated call (it runs in the call's own context).
    """
    return _ARRIVED.get()


class _InlineExecutor(futures.ThreadPoolExecutor):
    """Runs a submitted function at once on the submitting thread (gRPC's polling thread).

    gRPC's sync server runs a behavior on ``behavior.experimental_thread_pool`` when that
    is a :class:`~concurrent.futures.ThreadPoolExecutor`; only behaviors that never block
    (a refusal: set the trailers, abort) may use this one.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="inline")  # starts no thread

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        done: futures.Future[Any] = futures.Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the future, as a pool thread would
            done.set_exception(exc)
        return done


INLINE = _InlineExecutor()
"""Where refusals run: inline on the thread that received the call."""


def _refusing_handler(
    handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str, md: Any
) -> grpc.RpcMethodHandler:
    """A handler answering ``code`` without ever reading the request."""

    def abort(_requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        context.set_trailing_metadata(md)
        context.abort(code, message)

    abort.experimental_thread_pool = INLINE  # type: ignore[attr-defined]
    # Request-streaming handlers get a lazy iterator: refusing without touching it
    # means the request is never received into memory nor deserialized.
    if handler is not None and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    return grpc.stream_unary_rpc_method_handler(abort)


class _Place:
    """One gate place held for one call, given back exactly once."""

    def __init__(self, gate: SolveGate, clock: Callable[[], float], arrived: float) -> None:
        self.gate, self.clock, self.arrived = gate, clock, arrived
        self.held = True

    def give_back(self, lateness_ms: float | None) -> None:
        if self.held:
            self.held = False
            self.gate.leave(duration_s=self.clock() - self.arrived, lateness_ms=lateness_ms)


class CallGuard(grpc.ServerInterceptor):
    """Authenticates, rate-limits and admits calls from their metadata alone."""

    def __init__(
        self,
        service: str,
        auth: Authenticator,
        refusal: Refusal,
        limiter: TenantRateLimiter | None = None,
        gate: SolveGate | None = None,
        *,
        gated_method: str = "Solve",
        lateness: Lateness = lambda _response, _elapsed_ms: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Guard the calls of one service.

        Args:
            service: Full name of the guarded service (``qbridge.gateway.v1.Gateway``).
            auth: Checks the API key.
            refusal: Status, message and trailing metadata of a refused call.
            limiter: The tenants' token buckets by method (None: no rate limit).
            gate: The gate calls of ``gated_method`` pass (a unary method).
            gated_method: Method name (without the service) the gate applies to.
            lateness: How late a response of the gated method answered (adapts the gate).
            clock: Monotonic seconds.
        """
        self.prefix = f"/{service}/"
        self.auth = auth
        self.refusal = refusal
        self.limiter = limiter
        self.gate = gate
        self.gated_method = gated_method
        self.lateness = lateness
        self.clock = clock

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """See the module docstring."""
        arrived = self.clock()
        full = handler_call_details.method
        if not full.startswith(self.prefix):
            return continuation(handler_call_details)
        method = full[len(self.prefix) :]
        handler = continuation(handler_call_details)
        try:
            tenant = self.auth.tenant(handler_call_details.invocation_metadata)
            if self.limiter is not None:
                self.limiter.take(tenant, method)
            if method == self.gated_method and self.gate is not None and handler is not None:
                self.gate.enter()  # given back by the gated handler, whatever happens
                return self._gated(handler, arrived)
        except (UnauthenticatedError, OverloadedError) as exc:
            # Overload refusals are counted (metrics), not logged one by one: a line per
            # refusal would cost the polling thread most under overload.
            if not isinstance(exc, OverloadedError):
                logger.info("%s refused before reading: %s", method, exc)
            return _refusing_handler(handler, *self.refusal(exc, method))
        return handler

    def _gated(self, handler: grpc.RpcMethodHandler, arrived: float) -> grpc.RpcMethodHandler:
        """``handler`` (unary) holding the gate place taken for it when the call arrived.

        Served as request-streaming (wire-compatible with a unary call), so the request is
        read only once the place is held; the place is given back with how late the
        answer was (counted from the call's arrival), whatever happens (a request that
        never arrives or does not parse included), or when gRPC drops the handler unrun.
        """
        gate = self.gate
        assert gate is not None and handler.unary_unary is not None
        behavior = handler.unary_unary
        clock, lateness = self.clock, self.lateness
        place = _Place(gate, clock, arrived)

        def gated(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            token = _ARRIVED.set(arrived)
            late: float | None = None
            try:
                request = next(requests, None)
                if request is None:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
                response = behavior(request, context)
                late = lateness(response, (clock() - arrived) * 1000.0)
                return response
            finally:
                place.give_back(late)
                _ARRIVED.reset(token)

        # gRPC may still drop the call without running it (its own max_concurrent_rpcs
        # refusal comes after the interceptors): the handler is then released at once
        # (nothing else refers to it), and so is the place.
        weakref.finalize(gated, place.give_back, None)
        return grpc.stream_unary_rpc_method_handler(
            gated,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
