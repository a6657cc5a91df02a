"""Deferred ``started`` records (qbridge.executor.announce)."""

from __future__ import annotations

import threading
import time

from qbridge.executor.announce import StartAnnouncer


def _wait_for(cond: threading.Event, seconds: float = 5.0) -> bool:
    return cond.wait(seconds)


def test_a_solve_that_ends_before_the_delay_never_announces_its_start() -> None:
    sent: list[str] = []
    announcer = StartAnnouncer(delay_s=0.05)
    pending = announcer.hold(lambda: sent.append("started"))
    assert pending.settle() is False
    time.sleep(0.2)  # well past the delay: the dropped record stays dropped
    assert sent == []
    announcer.close()
    assert sent == []


def test_a_long_solve_announces_its_start_before_its_result() -> None:
    sent: list[str] = []
    fired = threading.Event()

    def send() -> None:
        sent.append("started")
        fired.set()

    announcer = StartAnnouncer(delay_s=0.01)
    pending = announcer.hold(send)
    assert _wait_for(fired)
    assert pending.settle() is True  # already sent: the result goes after it
    sent.append("ok")
    assert sent == ["started", "ok"]
    announcer.close()


def test_the_result_waits_for_a_start_being_sent_at_that_moment() -> None:
    order: list[str] = []
    sending = threading.Event()
    release = threading.Event()

    def slow_send() -> None:
        sending.set()
        release.wait(5)
        order.append("started")

    announcer = StartAnnouncer(delay_s=0.01)
    pending = announcer.hold(slow_send)
    assert _wait_for(sending)

    def finish() -> None:
        pending.settle()
        order.append("ok")

    t = threading.Thread(target=finish)
    t.start()
    time.sleep(0.05)
    assert order == []  # settle() blocks while the start is on its way
    release.set()
    t.join(5)
    assert order == ["started", "ok"]
    announcer.close()


def test_zero_delay_announces_at_once_and_close_sends_what_is_held() -> None:
    sent: list[int] = []
    at_once = StartAnnouncer(delay_s=0)
    assert at_once.hold(lambda: sent.append(1)).settle() is True
    assert sent == [1]
    held = StartAnnouncer(delay_s=60)
    held.hold(lambda: sent.append(2))
    held.close()  # the solve is still running at shutdown: its start is told
    assert sent == [1, 2]


def test_send_errors_raise_at_once_and_are_logged_when_held() -> None:
    def boom() -> None:
        raise RuntimeError("broker gone")

    try:
        StartAnnouncer(delay_s=0).hold(boom)
    except RuntimeError:
        pass
    else:
        raise AssertionError("an immediate send's error must reach the caller")
    held = StartAnnouncer(delay_s=60)
    pending = held.hold(boom)
    held.close()  # fires on this thread: logged, not raised
    assert pending.state == "sent"


def test_records_held_behind_others_are_each_announced_after_the_delay() -> None:
    # Only an idle announcer is woken by hold(); records added while others wait must
    # still be served, in order, none before its own delay has passed.
    delay = 0.03
    fired_at: dict[int, float] = {}
    held_at: dict[int, float] = {}
    announcer = StartAnnouncer(delay_s=delay)
    for i in range(20):
        held_at[i] = time.monotonic()
        announcer.hold(lambda i=i: fired_at.setdefault(i, time.monotonic()))
        time.sleep(0.004)
    deadline = time.monotonic() + 5
    while len(fired_at) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    announcer.close()
    assert sorted(fired_at) == list(range(20))
    assert all(fired_at[i] - held_at[i] >= delay for i in fired_at)
    assert list(fired_at) == sorted(fired_at, key=fired_at.__getitem__)  # in hold order
