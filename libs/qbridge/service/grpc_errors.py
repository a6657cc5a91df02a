"""Typed errors as gRPC answers: status code, message and an ``ErrorDetail``.

A service lists which of its error classes become which status code (first match
wins; anything else is INTERNAL "internal error", never the exception's text). The
message of an INVALID_ARGUMENT starts with the field path; the trailing metadata
:data:`ERROR_DETAIL_KEY` carries a ``qbridge.gateway.v1.ErrorDetail`` (field, reason,
error class, retry hint) and, when there is a retry hint, :data:`RETRY_AFTER_KEY` carries it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb

ERROR_DETAIL_KEY = "qbridge-error-bin"
"""Trailing metadata key of the serialized ``ErrorDetail``."""
RETRY_AFTER_KEY = "retry-after-ms"
"""Trailing metadata key of the retry hint (milliseconds), when there is one."""

Metadata = list[tuple[str, Any]]


class ErrorCodes:
    """Maps exceptions to gRPC answers."""

    def __init__(self, table: Sequence[tuple[type[BaseException], grpc.StatusCode, str]]) -> None:
        """Use ``table``: ``(exception class, status code, error class name)``, in order."""
        self.table = tuple(table)

    def status(self, exc: BaseException) -> tuple[grpc.StatusCode, str, pb.ErrorDetail]:
        """The status code, message and detail of ``exc``."""
        for kind, code, error_class in self.table:
            if isinstance(exc, kind):
                field = getattr(exc, "field", None) or ""
                message = str(exc)
                prefix = f"{field}: "
                reason = message[len(prefix) :] if field and message.startswith(prefix) else message
                detail = pb.ErrorDetail(
                    field=field,
                    reason=reason,
                    error_class=error_class,
                    retry_after_ms=getattr(exc, "retry_after_ms", 0),
                )
                return code, message, detail
        return grpc.StatusCode.INTERNAL, "internal error", pb.ErrorDetail(error_class="defect")

    def answer(self, exc: BaseException) -> tuple[grpc.StatusCode, str, Metadata]:
        """The status code, message and trailing metadata answering ``exc``."""
        code, message, detail = self.status(exc)
        md: Metadata = [(ERROR_DETAIL_KEY, detail.SerializeToString())]
        if detail.retry_after_ms:
            md.append((RETRY_AFTER_KEY, str(detail.retry_after_ms)))
        return code, message, md
