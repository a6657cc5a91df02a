"""Typed errors as gRPC answers: code, message, ErrorDetail and the retry hint."""

from __future__ import annotations

import grpc

from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import InvalidProblemError
from qbridge.service.admission import OverloadedError
from qbridge.service.grpc_errors import ERROR_DETAIL_KEY, RETRY_AFTER_KEY, ErrorCodes

CODES = ErrorCodes(
    [
        (InvalidProblemError, grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded"),
        (ValueError, grpc.StatusCode.FAILED_PRECONDITION, "first_match"),
        (Exception, grpc.StatusCode.UNKNOWN, "never_reached_for_value_errors"),
    ]
)


def test_the_field_leads_the_message_and_is_split_out_in_the_detail() -> None:
    exc = InvalidProblemError("must be >= 0, got -1", field="deadline_ms")
    code, message, detail = CODES.status(exc)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "deadline_ms: must be >= 0, got -1"
    assert (detail.field, detail.reason, detail.error_class) == (
        "deadline_ms",
        "must be >= 0, got -1",
        "invalid_input",
    )
    code, message, md = CODES.answer(exc)
    assert [k for k, _ in md] == [ERROR_DETAIL_KEY]  # no retry hint: no retry header
    assert pb.ErrorDetail.FromString(md[0][1]) == detail


def test_a_retry_hint_travels_in_the_detail_and_its_own_header() -> None:
    code, message, md = CODES.answer(OverloadedError("busy", retry_after_ms=250))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and message == "busy"
    headers = dict(md)
    assert headers[RETRY_AFTER_KEY] == "250"
    assert pb.ErrorDetail.FromString(headers[ERROR_DETAIL_KEY]).retry_after_ms == 250


def test_the_first_matching_class_wins_and_unknown_errors_are_internal() -> None:
    assert CODES.status(ValueError("x"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert CODES.status(KeyError("secret"))[0] == grpc.StatusCode.UNKNOWN
    bare = ErrorCodes([])
    code, message, detail = bare.status(RuntimeError("database password is hunter2"))
    assert (code, message, detail.error_class) == (
        grpc.StatusCode.INTERNAL,
        "internal error",  # the exception's text is not sent to the caller
        "defect",
    )
