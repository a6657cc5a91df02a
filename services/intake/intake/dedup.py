"""A small in-process memory of recently accepted jobs (an optimization only).

It lets an intake replica skip re-emitting an exact duplicate it has just
accepted. Correctness never depends on it: job ids are deterministic, so a
duplicate that another replica (or this one after a restart) emits again maps
to the same job id and the orchestrator deduplicates it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from enum import Enum


class Seen(Enum):
    """What the memory says about a ``(tenant, idempotency key)``."""

    NEW = "new"
    DUPLICATE = "duplicate"
    """Same key, same problem fingerprint: an exact duplicate."""
    CONFLICT = "conflict"
    """Same key, different problem: the key was reused for another problem."""


class RecentlyAccepted:
    """A bounded LRU of ``(tenant, idempotency key) -> input fingerprint``."""

    def __init__(self, maxsize: int = 10_000) -> None:
        """Create an empty memory holding at most ``maxsize`` keys (0 disables it)."""
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, tenant: str, key: str, fingerprint: str) -> Seen:
        """Classify a request against what was accepted recently (does not record it)."""
        with self._lock:
            known = self._entries.get((tenant, key))
            if known is None:
                return Seen.NEW
            self._entries.move_to_end((tenant, key))
            return Seen.DUPLICATE if known == fingerprint else Seen.CONFLICT

    def remember(self, tenant: str, key: str, fingerprint: str) -> None:
        """Record an accepted job; call only once its envelope is durably produced."""
        if self.maxsize <= 0:
            return
        with self._lock:
            self._entries[(tenant, key)] = fingerprint
            self._entries.move_to_end((tenant, key))
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
