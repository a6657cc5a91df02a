"""Validation of incoming problem requests, shared by intake and the gateway."""

from qbridge.validation.accept import (
    InvalidRequestError,
    RequestBounds,
    accept,
    job_id_for,
)

__all__ = ["InvalidRequestError", "RequestBounds", "accept", "job_id_for"]
