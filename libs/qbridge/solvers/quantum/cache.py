"""Transpile cache keyed by circuit *structure*, not coefficient values.

The QAOA ansatz carries every Ising coefficient as a circuit parameter, so two
problems with the same sparsity pattern, size and depth ``p`` have the same
circuit up to parameter values. Transpiling is the expensive part of preparing
a circuit (layout, routing, basis translation); a hit only binds new values.

The key also holds the backend's target and transpiler settings, because a
circuit transpiled for one device or seed is not valid (or not identical) for
another.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from qbridge.solvers.quantum.base import PreparedCircuit, TranspileSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StructureKey:
    """What determines a transpiled QAOA circuit.

    Attributes:
        target_key: The backend's transpile target (``aer:statevector``...).
        transpile: Transpiler settings.
        num_qubits: Logical qubits.
        p: QAOA depth.
        linear_support: Qubits with a non-zero field ``h_i``, sorted.
        quadratic_support: Pairs ``(i, j)``, ``i < j``, with non-zero ``J_ij``, sorted.
    """

    target_key: str
    transpile: TranspileSettings
    num_qubits: int
    p: int
    linear_support: tuple[int, ...]
    quadratic_support: tuple[tuple[int, int], ...]

    def digest(self) -> str:
        """Short stable hash, for logs and provenance."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`TranspileCache`."""

    hits: int
    misses: int
    evictions: int
    size: int
    maxsize: int

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0 when unused)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class TranspileCache:
    """Thread-safe bounded LRU of :class:`PreparedCircuit` by :class:`StructureKey`.

    Concurrent misses on the same key transpile once: the first caller builds
    while the others wait on a per-key lock, then read the entry.

    Args:
        maxsize: Maximum number of circuits kept.
    """

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._maxsize = maxsize
        self._entries: OrderedDict[StructureKey, PreparedCircuit] = OrderedDict()
        self._building: dict[StructureKey, threading.Lock] = {}
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def get_or_build(
        self, key: StructureKey, build: Callable[[], PreparedCircuit]
    ) -> tuple[PreparedCircuit, bool]:
        """Return the cached circuit for ``key``, building it on a miss.

        Returns:
            ``(prepared, hit)``.
        """
        entry = self._lookup(key)
        if entry is not None:
            return entry, True
        with self._lock:
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            entry = self._lookup(key)  # another thread may have built it meanwhile
            if entry is not None:
                return entry, True
            try:
                prepared = build()
                self._store(key, prepared)
            finally:
                # Only after storing: a caller arriving now must find the entry,
                # not a fresh key lock that would let it transpile again.
                with self._lock:
                    self._building.pop(key, None)
            return prepared, False

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._evictions, len(self._entries), self._maxsize
            )

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = self._evictions = 0

    def _lookup(self, key: StructureKey) -> PreparedCircuit | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry

    def _store(self, key: StructureKey, prepared: PreparedCircuit) -> None:
        with self._lock:
            self._misses += 1
            self._entries[key] = prepared
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                evicted, _ = self._entries.popitem(last=False)
                self._evictions += 1
                logger.debug("transpile cache evicted %s", evicted.digest())


DEFAULT_TRANSPILE_CACHE = TranspileCache()
"""Process-wide cache shared by every :class:`~.qaoa.QaoaSolver` by default."""
