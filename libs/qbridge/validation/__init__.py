"""Validation of incoming problem requests, shared by intake and the gateway."""

from qbridge.validation.accept import (
    Accepted,
    InvalidRequestError,
    RequestBounds,
    accept,
    accept_request,
    job_id_for,
)

__all__ = [
    "Accepted",
    "InvalidRequestError",
    "RequestBounds",
    "accept",
    "accept_request",
    "job_id_for",
]
