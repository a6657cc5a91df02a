"""Structure-aware fuzzing from bytes: hypothesis generates (and shrinks) plain bytes, and a
:class:`Recipe` turns them into hostile but plausible inputs.

Generating bytes is the cheapest thing hypothesis does (nested strategies cost ~10 ms per
example on a 2-core machine; bytes cost ~1 ms), so 10,000 inputs per target fit in
``make test``; shrinking a failure still works, on the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

KINDS = ("maxcut", "qubo", "ising", "knapsack", "portfolio", "jobshop")
AVRO_TRIPLE_KEYS = {"maxcut": ("u", "v", "weight")}

HOSTILE_INTS = (0, 1, -1, 2**31, 2**53, 2**53 + 1, 2**62, 2**63 - 1, 2**63, -(2**63), 10**30)
HOSTILE_FLOATS = (
    float("nan"),
    float("inf"),
    float("-inf"),
    1.7e308,
    -1.7e308,
    1e100,
    1.0000001e100,
    5e-324,
    -0.0,
    0.1,
)
HOSTILE_TEXT = ("", " ", "a\x00b", "\x00", "\n", "\x7f", "é", "💥", "x" * 300, "auto", "maxcut")


class Recipe:
    """Reads choices from a byte string; once exhausted every choice is the first option."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def below(self, n: int) -> int:
        """An integer in ``0..n-1``."""
        return self.byte() % n if n > 1 else 0

    def chance(self, one_in: int) -> bool:
        """True about once in ``one_in`` draws (never once the bytes are exhausted)."""
        return self.below(one_in) == one_in - 1

    def pick(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def small_int(self) -> int:
        if self.chance(16):
            return self.pick(HOSTILE_INTS)
        return (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, -1, -2)[self.below(14)]

    def number(self) -> Any:
        r = self.below(20)
        if r == 19:
            return self.pick(HOSTILE_FLOATS)
        if r == 18:
            return self.small_int()
        return (self.byte() - 128) / 16

    def text(self) -> str:
        if self.chance(3):
            return self.pick(HOSTILE_TEXT)
        return "".join(chr(self.byte() or 0x41) for _ in range(self.below(6)))

    def anything(self, depth: int = 0) -> Any:
        """A JSON-like value of any type (mostly the wrong one where it is used)."""
        r = self.below(9 if depth < 3 else 6)
        if r == 0:
            return None
        if r == 1:
            return bool(self.below(2))
        if r == 2:
            return self.small_int()
        if r == 3:
            return self.number()
        if r == 4:
            return self.text()
        if r == 5:
            return bytes(self.byte() for _ in range(self.below(4)))
        if r in (6, 7):
            return [self.anything(depth + 1) for _ in range(self.below(4))]
        return {self.text(): self.anything(depth + 1) for _ in range(self.below(4))}

    def maybe(self, plausible: Any) -> Any:
        """Mostly ``plausible()``, sometimes anything at all."""
        return self.anything() if self.chance(40) else plausible()

    def items(self, make: Any, most: int = 8) -> list[Any]:
        return [self.maybe(make) for _ in range(self.below(most + 1))]

    def problem(self, kind: str, *, avro: bool) -> dict[str, Any]:
        """A payload of ``kind``: the ``to_dict`` form, or the Avro record if ``avro``."""
        floats = lambda: self.items(self.number)  # noqa: E731
        ints = lambda: self.items(self.small_int)  # noqa: E731

        def index(n: Any) -> int:
            ok = isinstance(n, int) and 0 < n < 64
            return self.small_int() if not ok or self.chance(16) else self.below(n)

        def triples(n: Any) -> list[Any]:
            keys = AVRO_TRIPLE_KEYS.get(kind, ("i", "j", "value"))

            def one() -> Any:
                t = (index(n), index(n), self.number())
                return dict(zip(keys, t, strict=True)) if avro else list(t)

            return self.items(one)

        if kind == "maxcut":
            n = self.maybe(self.small_int)
            return {"num_nodes": n, "edges": triples(n)}
        if kind == "qubo":
            n = self.maybe(self.small_int)
            size = n if isinstance(n, int) and 0 <= n <= 16 else self.below(8)
            linear = floats() if self.chance(8) else [self.number() for _ in range(size)]
            return {
                "num_variables": n,
                "linear": linear,
                "quadratic": triples(n),
                "offset": self.maybe(self.number),
            }
        if kind == "ising":
            h = floats()
            return {
                "h": h,
                ("couplings" if avro else "J"): triples(len(h)),
                "offset": self.maybe(self.number),
            }
        if kind == "knapsack":
            values = floats()
            weights = ints() if self.chance(8) else [self.small_int() for _ in values]
            return {"values": values, "weights": weights, "capacity": self.maybe(self.small_int)}
        if kind == "portfolio":
            n = self.below(6)
            return {
                "expected_returns": [self.number() for _ in range(n)],
                "covariance": [
                    [self.number() for _ in range(n if not self.chance(10) else n + 1)]
                    for _ in range(n if not self.chance(10) else self.below(6))
                ],
                "budget": self.maybe(self.small_int),
                "risk_aversion": self.maybe(self.number),
            }

        def op() -> Any:
            m, d = self.small_int(), self.small_int()
            return {"machine": m, "duration": d} if avro else [m, d]

        return {"jobs": [self.items(op, 4) for _ in range(self.below(5))]}

    def labelled_problem(self, *, avro: bool) -> tuple[Any, Any]:
        """``(kind, payload)``; sometimes mislabelled, missing a key or with an extra one."""
        kind = self.pick(KINDS)
        payload: Any = self.problem(kind, avro=avro)
        if self.chance(10):
            payload.pop(self.pick(sorted(payload)), None)
        if self.chance(10):
            payload[self.text()] = self.anything()
        if self.chance(20):
            payload = self.anything()
        label: Any = kind if not self.chance(10) else self.pick((*KINDS, "tsp", "", None, 3))
        return label, payload
