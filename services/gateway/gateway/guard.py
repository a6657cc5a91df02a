"""The gateway's front guard: a gRPC server interceptor run before a request is read.

For every call of ``qbridge.gateway.v1.Gateway`` (health and reflection pass through),
from the call's metadata only:

1. the API key is checked (UNAUTHENTICATED otherwise);
2. the tenant's token bucket for the method is charged (RESOURCE_EXHAUSTED);
3. a Solve takes a place in the :class:`~gateway.admission.SolveGate` before its request
   is read (RESOURCE_EXHAUSTED at once if full), given back with how late it answered.

A refused call is answered by a handler that never reads the request: gRPC core does
not buffer it past the flow-control window and nothing deserializes it. The largest
request gRPC accepts at all is ``grpc_max_receive_bytes``. A refusal carries the
``qbridge-error-bin`` detail and, for RESOURCE_EXHAUSTED, ``retry-after-ms``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from gateway.admission import OverloadedError, SolveGate, TenantRateLimiter
from gateway.service import ERROR_DETAIL_KEY, REQUESTS, error_status
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.service.auth import Authenticator, UnauthenticatedError

logger = logging.getLogger(__name__)

RETRY_AFTER_KEY = "retry-after-ms"
GATEWAY_PREFIX = "/" + pb.DESCRIPTOR.services_by_name["Gateway"].full_name + "/"


def refusal_metadata(exc: BaseException) -> tuple[grpc.StatusCode, str, list[tuple[str, Any]]]:
    """Status, message and trailing metadata of a refused call."""
    code, message, detail = error_status(exc)
    md: list[tuple[str, Any]] = [(ERROR_DETAIL_KEY, detail.SerializeToString())]
    if detail.retry_after_ms:
        md.append((RETRY_AFTER_KEY, str(detail.retry_after_ms)))
    return code, message, md


def _refuse(handler: grpc.RpcMethodHandler | None, exc: BaseException, method: str) -> Any:
    """A handler answering ``exc`` without ever reading the request."""
    code, message, md = refusal_metadata(exc)
    REQUESTS.labels(method, code.name).inc()

    def abort(_requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        context.set_trailing_metadata(md)
        context.abort(code, message)

    # Request-streaming handlers get a lazy iterator: refusing without touching it
    # means the request is never received into memory nor deserialized.
    if handler is not None and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    return grpc.stream_unary_rpc_method_handler(abort)


class GatewayGuard(grpc.ServerInterceptor):
    """Authenticates, rate-limits and admits calls from their metadata alone."""

    def __init__(
        self,
        auth: Authenticator,
        limiter: TenantRateLimiter | None = None,
        gate: SolveGate | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Guard calls with ``auth``, the tenants' ``limiter`` and the Solve ``gate``."""
        self.auth = auth
        self.limiter = limiter
        self.gate = gate
        self.clock = clock

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """See the module docstring."""
        full = handler_call_details.method
        if not full.startswith(GATEWAY_PREFIX):
            return continuation(handler_call_details)
        method = full[len(GATEWAY_PREFIX) :]
        handler = continuation(handler_call_details)
        try:
            tenant = self.auth.tenant(handler_call_details.invocation_metadata)
            if self.limiter is not None:
                self.limiter.take(tenant, method)
            if method == "Solve" and self.gate is not None and handler is not None:
                return self._gated(handler)
        except (UnauthenticatedError, OverloadedError) as exc:
            logger.info("%s refused before reading: %s", method, exc)
            return _refuse(handler, exc, method)
        return handler

    def _gated(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` (unary Solve) holding a gate place while it runs.

        Served as request-streaming (wire-compatible with a unary call), so the behavior
        starts when the call arrives: the place is taken, or the call refused, before the
        request is read; the place is given back with how late the answer was, whatever
        happens (a request that never arrives or does not parse included).
        """
        gate = self.gate
        assert gate is not None and handler.unary_unary is not None
        behavior = handler.unary_unary
        clock = self.clock

        def solve(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            started = clock()
            try:
                gate.enter()
            except OverloadedError as exc:
                code, message, md = refusal_metadata(exc)
                REQUESTS.labels("Solve", code.name).inc()
                context.set_trailing_metadata(md)
                context.abort(code, message)
            late: float | None = None
            try:
                request = next(requests, None)
                if request is None:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
                response = behavior(request, context)
                if isinstance(response, pb.SolveResponse) and response.deadline_ms:
                    late = (clock() - started) * 1000.0 - response.deadline_ms
                return response
            finally:
                gate.leave(duration_s=clock() - started, lateness_ms=late)

        return grpc.stream_unary_rpc_method_handler(
            solve,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
