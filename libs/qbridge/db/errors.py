"""Database driver errors translated into the platform's error classes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import psycopg
from psycopg import errors as pg_errors

from qbridge.errors import QBridgeError, StoreUnavailableError

InvalidValueError = Callable[[str], BaseException]
"""Builds the caller's own error for a value the database rejected."""


def translate(exc: BaseException, invalid: InvalidValueError | None = None) -> BaseException:
    """Map a driver error onto the platform's error classes (others pass through).

    * connection/operational failures (incl. pool timeouts, admin shutdown, deadlocks,
      serialization failures, statement timeouts) and a missing schema
      -> :class:`~qbridge.errors.StoreUnavailableError`;
    * bad values (out of range, invalid text) -> ``invalid(message)`` when given.

    Args:
        exc: The exception raised while using the database.
        invalid: Builds the error for a rejected value (None: the driver error stays).

    Returns:
        The classified error, or ``exc`` itself.
    """
    if isinstance(exc, QBridgeError):
        return exc
    if isinstance(
        exc,
        psycopg.OperationalError
        | psycopg.InterfaceError
        | pg_errors.UndefinedTable
        | pg_errors.UndefinedColumn
        | TimeoutError,
    ):
        return StoreUnavailableError(f"database unavailable: {type(exc).__name__}: {exc}".strip())
    if invalid is not None and isinstance(exc, psycopg.DataError):
        return invalid(f"value rejected by the database: {exc}")
    return exc


@contextlib.contextmanager
def translated(invalid: InvalidValueError | None = None) -> Iterator[None]:
    """Re-raise driver errors as classified platform errors (see :func:`translate`).

    Args:
        invalid: Builds the error for a value the database rejected.
    """
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, invalid)
        if mapped is exc:
            raise
        raise mapped from exc
