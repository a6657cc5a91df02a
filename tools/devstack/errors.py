"""Exceptions raised by the local dev stack."""

from __future__ import annotations


class DevstackError(RuntimeError):
    """A local service could not be fetched, installed, started or stopped."""


class PortInUseError(DevstackError):
    """A service lost a free-port race: its port was taken before it could bind.

    Raised only internally to trigger a retry on fresh ports; callers normally
    see it only when every retry failed.
    """
