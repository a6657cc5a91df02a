"""Settings every service has (environment, no prefix); services subclass it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from qbridge.problems.limits import Limits
from qbridge.topics import MAX_REQUEST_BYTES
from qbridge.validation.accept import RequestBounds

_LIMITS = Limits()
_BOUNDS = RequestBounds()


class ServiceSettings(BaseSettings):
    """Common service settings.

    Attributes:
        log_level: Root log level.
        log_format: ``json`` (one object per line, for log pipelines) or ``text``.
        http_host: Bind address of the metrics/health endpoint.
        http_port: Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0 picks a free one).
        shutdown_grace_s: How long SIGTERM waits for in-flight work before exiting.
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore")

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    http_host: str = "0.0.0.0"
    http_port: int = 0
    shutdown_grace_s: float = 25.0


class ProblemLimitsSettings(BaseSettings):
    """Problem size limits (``QBRIDGE_MAX_VARIABLES``...), defined once.

    Every service that validates problems (intake, the gateway) must apply the same limits.

    Attributes:
        max_variables: See :class:`qbridge.problems.limits.Limits` for each limit.
        max_edges: MaxCut edges.
        max_qubits: Qubits after encoding.
        max_jobshop_operations: Job-shop operations.
        max_jobshop_horizon: Job-shop sum of durations.
        max_knapsack_capacity: Knapsack capacity.
        max_request_bytes: Byte budget of one encoded request (``QBRIDGE_MAX_REQUEST_BYTES``);
            larger ones are rejected before they are parsed ("too large"). Keep it below
            the producers' ``message.max.bytes`` (see :data:`qbridge.topics.MAX_REQUEST_BYTES`).
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore")

    max_variables: int | None = _LIMITS.max_variables
    max_edges: int | None = _LIMITS.max_edges
    max_qubits: int | None = _LIMITS.max_qubits
    max_jobshop_operations: int | None = _LIMITS.max_jobshop_operations
    max_jobshop_horizon: int | None = _LIMITS.max_jobshop_horizon
    max_knapsack_capacity: int | None = _LIMITS.max_knapsack_capacity
    max_request_bytes: int = MAX_REQUEST_BYTES

    def limits(self) -> Limits:
        """The problem size limits."""
        return Limits(
            max_variables=self.max_variables,
            max_edges=self.max_edges,
            max_qubits=self.max_qubits,
            max_jobshop_operations=self.max_jobshop_operations,
            max_jobshop_horizon=self.max_jobshop_horizon,
            max_knapsack_capacity=self.max_knapsack_capacity,
        )


class RequestBoundsSettings(BaseSettings):
    """Bounds on a request's own fields (``QBRIDGE_MIN_TIMEOUT_MS``...), defined once.

    Attributes:
        min_timeout_ms: Shortest accepted ``timeout_ms``.
        max_timeout_ms: Longest accepted ``timeout_ms``.
        max_shot_budget: Largest accepted ``shot_budget`` (0 = no limit).
        max_tags: Most tags per request.
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore")

    min_timeout_ms: int = Field(default=_BOUNDS.min_timeout_ms, ge=1)
    max_timeout_ms: int = Field(default=_BOUNDS.max_timeout_ms, ge=1)
    max_shot_budget: int = Field(default=_BOUNDS.max_shot_budget or 0, ge=0)
    max_tags: int = Field(default=_BOUNDS.max_tags, ge=0)

    def bounds(self) -> RequestBounds:
        """The bounds on a request's own fields."""
        return RequestBounds(
            min_timeout_ms=self.min_timeout_ms,
            max_timeout_ms=self.max_timeout_ms,
            max_shot_budget=self.max_shot_budget or None,
            max_tags=self.max_tags,
        )
