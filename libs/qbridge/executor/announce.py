"""Deferred ``started`` records: a solve that ends quickly never announces its start.

An executor tells the orchestrator that a work item started so that the job shows
``running`` while a long solve runs. For a solve that ends within a few milliseconds
(most classical work: an exact enumeration takes microseconds) the ``started`` record
tells nobody anything: it would reach the orchestrator together with the result, yet
cost a Kafka message, a ``running`` transition, their database rows and every
consumer's decoding — about a fifth of the pipeline's work per small job.

:class:`StartAnnouncer` holds each ``started`` record for ``delay_s`` and sends it only
if the solve is still running then; the result of a solve that ended earlier cancels
it. The order on the topic stays ``started`` before the result: both are sent under one
lock, and the result waits for a ``started`` being sent at that moment.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

__all__ = ["PendingStart", "StartAnnouncer"]


@dataclass
class PendingStart:
    """One held ``started`` record (see :meth:`StartAnnouncer.hold`)."""

    send: Callable[[], None]
    state: str = "held"  # held | sent | dropped
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self) -> bool:
        """The solve ended: drop the record unless it was sent. Returns whether it was sent."""
        with self.lock:
            if self.state == "held":
                self.state = "dropped"
            return self.state == "sent"

    def fire(self) -> None:
        """Send the record now unless the solve already ended (scheduler thread)."""
        with self.lock:
            if self.state != "held":
                return
            self.state = "sent"
            try:
                self.send()
            except Exception:
                # The result still follows; a lost 'running' is only a missing transition.
                logger.exception("could not send a started record")


class StartAnnouncer:
    """Sends held ``started`` records whose solve is still running after ``delay_s``.

    One daemon thread serves every held record (a heap of due times), so holding one
    costs a heap push, not a thread.

    Args:
        delay_s: How long a solve runs before its start is announced (0: at once).
        clock: Monotonic seconds.
    """

    def __init__(self, delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay_s = delay_s
        self.clock = clock
        self._heap: list[tuple[float, int, PendingStart]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def hold(self, send: Callable[[], None]) -> PendingStart:
        """Hold one ``started`` record; ``send`` publishes it.

        With ``delay_s`` 0 it is sent at once on the caller's thread (errors propagate;
        the returned record is already ``sent``). A held record's send errors are
        logged: the result still follows, only the ``running`` transition is missing.
        """
        if self.delay_s <= 0 or self._closed:
            send()  # at once, on the caller's thread: its errors are the caller's
            return PendingStart(send, state="sent")
        pending = PendingStart(send)
        with self._cond:
            idle = not self._heap
            heapq.heappush(self._heap, (self.clock() + self.delay_s, next(self._seq), pending))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="start-announcer", daemon=True
                )
                self._thread.start()
            if idle:
                # Only an idle thread waits without a due time: the delay is the same
                # for every record, so a new one is never due before those held, and
                # waking the thread per record would cost a context switch each.
                self._cond.notify()
        return pending

    def close(self) -> None:
        """Send what is still held (its solves are still running) and stop the thread."""
        with self._cond:
            self._closed = True
            held = [p for _, _, p in self._heap]
            self._heap.clear()
            self._cond.notify()
        for pending in held:
            pending.fire()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        # Wakes at most every ``delay_s / 2`` and serves every record due by then, so a
        # start is announced after ``delay_s`` to ``1.5 * delay_s``; most records were
        # settled meanwhile and are just dropped, without a wake-up each.
        tick = self.delay_s / 2
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > self.clock()):
                    wait = self._heap[0][0] - self.clock() if self._heap else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                now = self.clock()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for pending in due:
                pending.fire()
            with self._cond:  # the tick; close() ends it at once
                self._cond.wait_for(lambda: self._closed, timeout=tick)

    @property
    def held(self) -> int:
        """Records held now (sent, dropped and due ones included until served)."""
        with self._cond:
            return len(self._heap)
