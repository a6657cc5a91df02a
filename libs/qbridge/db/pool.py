"""Connection pools that survive database restarts."""

from __future__ import annotations

from psycopg_pool import ConnectionPool


def make_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    timeout_s: float = 5.0,
    connect_timeout_s: int = 3,
    statement_timeout_ms: int = 30_000,
    reconnect_timeout_s: float = 15.0,
    application_name: str = "qbridge",
    check: bool = True,
) -> ConnectionPool:
    """A connection pool that opens in the background (a down database is not fatal).

    With ``check``, connections are checked when taken from the pool, so those broken by
    a database restart are replaced instead of failing a query (one round trip more per
    checkout). Reconnection attempts back off (1, 2, 4... s) for at most
    ``reconnect_timeout_s``, then start afresh, so a recovered database is noticed within
    about half that time even after a long outage.

    Args:
        database_url: libpq URL.
        min_size: Connections kept open.
        max_size: Connections at most.
        timeout_s: Wait for a free connection before ``PoolTimeout``.
        connect_timeout_s: libpq connect timeout.
        statement_timeout_ms: Server-side limit of every statement.
        reconnect_timeout_s: Give up one reconnection series after this long.
        application_name: Shown in ``pg_stat_activity``; also the pool's name.
        check: Check each connection when it is taken from the pool.

    Returns:
        The pool, opening in the background (``pool.wait()`` waits for it).
    """
    pool = ConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        open=False,
        check=ConnectionPool.check_connection if check else None,
        name=application_name,
        reconnect_timeout=reconnect_timeout_s,
        kwargs={
            "connect_timeout": connect_timeout_s,
            "application_name": application_name,
            "options": f"-c statement_timeout={statement_timeout_ms}",
        },
    )
    pool.open(wait=False)
    return pool
