"""Per-tenant API keys from a gRPC call's metadata (the gateway's callers).

A key arrives as ``authorization: Bearer <key>`` or ``x-api-key: <key>``. Keys are
configured as ``{key: tenant}`` (``QBRIDGE_API_KEYS``) and kept only as SHA-256 digests,
so lookups do not compare secrets character by character. No keys configured means
no caller is authenticated (there is no anonymous mode).

A key may carry roles (``QBRIDGE_API_KEY_ROLES='{"key1": ["approver"]}'``): the
``approver`` role may approve or reject jobs held for approval. A caller's identity
(what audit trails record) is its tenant and a short digest of its key, never the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qbridge.errors import ErrorClass, QBridgeError


class UnauthenticatedError(QBridgeError):
    """Missing or unknown API key."""

    error_class = ErrorClass.INVALID_INPUT


APPROVER = "approver"
"""The role that may approve or reject jobs held for approval."""


class RoleRequiredError(QBridgeError):
    """The caller's key lacks the role the call needs."""

    error_class = ErrorClass.INVALID_INPUT


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    Attributes:
        tenant: The key's tenant.
        identity: ``tenant/key-<8 hex digits of the key's digest>`` (safe to store).
        roles: The key's roles.
    """

    tenant: str
    identity: str
    roles: frozenset[str] = frozenset()

    def require(self, role: str) -> None:
        """Raise unless the caller has ``role``.

        Raises:
            RoleRequiredError: The key lacks ``role``.
        """
        if role not in self.roles:
            raise RoleRequiredError(f"this API key lacks the {role!r} role")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Authenticator:
    """Maps an API key in the metadata to its tenant."""

    def __init__(
        self, keys: Mapping[str, str], roles: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        """Use ``keys`` (API key -> tenant) and ``roles`` (API key -> role names).

        Raises:
            ValueError: An empty key or tenant, or roles for a key not in ``keys``.
        """
        for key, tenant in keys.items():
            if not key.strip() or not str(tenant).strip():
                raise ValueError("API keys and tenants must not be empty")
        unknown = set(roles or {}) - set(keys)
        if unknown:
            raise ValueError(f"roles given for {len(unknown)} key(s) not in the API keys")
        self._tenants = {_digest(k): str(t) for k, t in keys.items()}
        self._roles = {_digest(k): frozenset(r) for k, r in (roles or {}).items()}

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

    def caller(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """The tenant, identity and roles of the key in ``metadata``.

        Raises:
            UnauthenticatedError: No key, or an unknown one.
        """
        tenant = self.tenant(metadata)
        digest = _digest(api_key(metadata) or "")
        return Caller(
            tenant, f"{tenant}/key-{digest.hex()[:8]}", self._roles.get(digest, frozenset())
        )


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
