"""Per-tenant API keys from a gRPC call's metadata (the gateway's callers).

A key arrives as ``authorization: Bearer <key>`` or ``x-api-key: <key>``. Keys are
configured as ``{key: tenant}`` (``QBRIDGE_API_KEYS``) and kept only as SHA-256 digests,
so lookups do not compare secrets character by character. No keys configured means
no caller is authenticated (there is no anonymous mode).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from qbridge.errors import ErrorClass, QBridgeError


class UnauthenticatedError(QBridgeError):
    """Missing or unknown API key."""

    error_class = ErrorClass.INVALID_INPUT


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Authenticator:
    """Maps an API key in the metadata to its tenant."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        """Use ``keys`` (API key -> tenant).

        Raises:
            ValueError: An empty key or tenant.
        """
        for key, tenant in keys.items():
            if not key.strip() or not str(tenant).strip():
                raise ValueError("API keys and tenants must not be empty")
        self._tenants = {_digest(k): str(t) for k, t in keys.items()}

    @property
    def configured(self) -> bool:
        """Whether any key is configured."""
        return bool(self._tenants)

    @property
    def tenants(self) -> frozenset[str]:
        """Tenants that have a key."""
        return frozenset(self._tenants.values())

    def tenant(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The tenant of the key in ``metadata``.

        Raises:
            UnauthenticatedError: No key, or an unknown one.
        """
        key = api_key(metadata)
        if key is None:
            raise UnauthenticatedError(
                "missing API key: send 'authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        tenant = self._tenants.get(_digest(key))
        if tenant is None:
            raise UnauthenticatedError("unknown API key")
        return tenant


def api_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The API key of the metadata (``authorization`` bearer first), if any."""
    bearer = None
    header = None
    for name, value in metadata or ():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        lname = name.lower()
        if lname == "authorization":
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif lname == "x-api-key" and text.strip():
            header = text.strip()
    return bearer or header
