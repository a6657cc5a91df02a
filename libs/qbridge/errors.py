"""The one exception tree of qbridge.

Every error carries an :class:`ErrorClass` so that callers (the orchestrator,
the DLQ publisher, the gateway) can decide what to do without matching on
concrete types: retry, reroute, degrade to classical, or fail fast.
"""

from __future__ import annotations

import enum


class ErrorClass(enum.StrEnum):
    """How the platform reacts to an error."""

    TRANSIENT = "transient"
    """Retry the same route with backoff."""
    BACKEND_UNAVAILABLE = "backend_unavailable"
    """Reroute to another backend (or classical)."""
    OVER_BUDGET = "over_budget"
    """Too slow or too expensive: degrade to classical."""
    INVALID_INPUT = "invalid_input"
    """The input is wrong: fail fast, never retry."""
    DEFECT = "defect"
    """A bug in our code: fail fast, never retry."""


class QBridgeError(Exception):
    """Base of every error raised by qbridge code."""

    error_class: ErrorClass = ErrorClass.DEFECT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(QBridgeError):
    """Settings are missing or inconsistent."""

    error_class = ErrorClass.DEFECT


class StoreUnavailableError(QBridgeError):
    """A database cannot be used right now (down, restarting, deadlock...): retry later."""

    error_class = ErrorClass.TRANSIENT


class InvalidProblemError(QBridgeError):
    """A problem failed schema or semantic validation.

    Attributes:
        field: Dotted path of the offending field, if known (e.g. ``edges[3].weight``).
    """

    error_class = ErrorClass.INVALID_INPUT

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class ProblemTooLargeError(InvalidProblemError):
    """A problem exceeds a configured size limit."""


class NotEligibleError(QBridgeError):
    """A solver cannot take this problem (type unsupported, too many qubits...)."""

    error_class = ErrorClass.BACKEND_UNAVAILABLE


class CodecError(QBridgeError):
    """A message could not be encoded or decoded."""

    error_class = ErrorClass.INVALID_INPUT


class BadMagicByteError(CodecError):
    """The message does not start with the Confluent magic byte 0."""


class TruncatedMessageError(CodecError):
    """The message is shorter than its framing or its Avro body claims."""


class UnknownSchemaError(CodecError):
    """The schema id in the framing is not known to the registry."""


class SchemaMismatchError(CodecError):
    """The message was written with a schema that is not the expected subject."""


class MessageTooLargeError(CodecError):
    """A message is larger than its byte budget (a request's, or Kafka's ``message.max.bytes``).

    Invalid input: the same bytes will always be too large, so the message goes to the
    dead-letter topic instead of being retried.
    """


class SolverError(QBridgeError):
    """A solver failed while solving."""

    error_class = ErrorClass.DEFECT


class TransientSolverError(SolverError):
    """A failure worth retrying on the same route (e.g. a dropped connection)."""

    error_class = ErrorClass.TRANSIENT


class BackendUnavailableError(SolverError):
    """The backend is down or refuses work: reroute."""

    error_class = ErrorClass.BACKEND_UNAVAILABLE


class BudgetExceededError(SolverError):
    """The job's time, shot or cost budget cannot be met: degrade."""

    error_class = ErrorClass.OVER_BUDGET


class BusError(QBridgeError):
    """The event bus (Kafka) failed."""

    error_class = ErrorClass.TRANSIENT


class DeliveryError(BusError):
    """A produced message was not acknowledged by the broker."""


class ProducerQueueFullError(BusError):
    """The producer's local queue stayed full past the send deadline (broker slow or down)."""


class StoppingError(QBridgeError):
    """Work was not started because the service is shutting down (it is redelivered)."""

    error_class = ErrorClass.TRANSIENT


def classify(exc: BaseException) -> ErrorClass:
    """Return the :class:`ErrorClass` of any exception.

    Args:
        exc: The exception to classify. Foreign exceptions count as defects,
            except timeouts and connection errors, which are transient.

    Returns:
        The class that decides retry / reroute / degrade / fail-fast.
    """
    if isinstance(exc, QBridgeError):
        return exc.error_class
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return ErrorClass.TRANSIENT
    return ErrorClass.DEFECT
