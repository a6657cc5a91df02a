"""Errors the gateway maps onto gRPC status codes (see :mod:`gateway.service`)."""

from __future__ import annotations

from qbridge.errors import ErrorClass, QBridgeError


class NotFoundError(QBridgeError):
    """Unknown job, or a job of another tenant (NOT_FOUND: existence is not disclosed)."""

    error_class = ErrorClass.INVALID_INPUT


class NoAnswerError(QBridgeError):
    """No answer at all could be found before the deadline (DEADLINE_EXCEEDED)."""

    error_class = ErrorClass.OVER_BUDGET


class CallerGoneError(QBridgeError):
    """The caller cancelled or its deadline passed: the work for it was dropped (CANCELLED)."""

    error_class = ErrorClass.TRANSIENT


class UnavailableError(QBridgeError):
    """A dependency (Kafka, the results database) cannot be reached (UNAVAILABLE)."""

    error_class = ErrorClass.TRANSIENT
