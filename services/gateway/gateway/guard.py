"""The gateway's front guard: :class:`~qbridge.service.guard.CallGuard` on its calls.

Every call of ``qbridge.gateway.v1.Gateway`` is authenticated and charged to its
tenant's token bucket, and a Solve takes a place in the adaptive gate, from the call's
metadata before its request is read. The largest request gRPC accepts at all is
``grpc_max_receive_bytes``. A refusal carries the ``qbridge-error-bin`` detail and, for
RESOURCE_EXHAUSTED, ``retry-after-ms``; it is counted like any other answered call.
"""

from __future__ import annotations

from typing import Any

import grpc

from gateway.service import ERRORS, REQUESTS
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.service.admission import AdmissionSettings
from qbridge.service.auth import Authenticator
from qbridge.service.guard import CallGuard

GATEWAY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gateway"].full_name


def refusal(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str, list[tuple[str, Any]]]:
    """Status, message and trailing metadata of a refused call (counted in the requests)."""
    code, message, md = ERRORS.answer(exc)
    REQUESTS.labels(method, code.name).inc()
    return code, message, md


def solve_lateness(response: Any, elapsed_ms: float) -> float | None:
    """How far past its deadline a Solve answered (the gate adapts to it)."""
    if isinstance(response, pb.SolveResponse) and response.deadline_ms:
        return elapsed_ms - response.deadline_ms
    return None


def gateway_guard(settings: AdmissionSettings, auth: Authenticator) -> CallGuard:
    """The interceptor checking key, tenant rate and Solve capacity before reading calls."""
    return CallGuard(
        GATEWAY_SERVICE_NAME,
        auth,
        refusal,
        settings.rate_limiter(),
        settings.solve_gate(),
        gated_method="Solve",
        lateness=solve_lateness,
    )
