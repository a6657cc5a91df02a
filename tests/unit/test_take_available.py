"""take_available: a lone message is returned at once, never held for a batch timeout."""

from __future__ import annotations

from typing import Any

from qbridge.bus.consumer import take_available


class FakeConsumer:
    def __init__(self, fetched: list[Any]) -> None:
        self.fetched = list(fetched)
        self.calls: list[tuple[str, float]] = []

    def poll(self, timeout: float) -> Any:
        self.calls.append(("poll", timeout))
        return self.fetched.pop(0) if self.fetched else None

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.calls.append(("consume", timeout))
        out, self.fetched = self.fetched[:num_messages], self.fetched[num_messages:]
        return out


def test_nothing_fetched_waits_only_in_poll() -> None:
    c = FakeConsumer([])
    assert take_available(c, 10, timeout=0.5) == []  # type: ignore[arg-type]
    assert c.calls == [("poll", 0.5)]


def test_a_lone_message_comes_back_without_a_waiting_consume() -> None:
    c = FakeConsumer(["m1"])
    assert take_available(c, 500, timeout=0.1) == ["m1"]  # type: ignore[arg-type]
    assert all(t == 0 for kind, t in c.calls if kind == "consume")


def test_takes_what_is_fetched_up_to_the_maximum() -> None:
    c = FakeConsumer([f"m{i}" for i in range(10)])
    assert take_available(c, 4, timeout=0.1) == ["m0", "m1", "m2", "m3"]  # type: ignore[arg-type]
    assert take_available(c, 100, timeout=0.1) == [f"m{i}" for i in range(4, 10)]  # type: ignore[arg-type]
