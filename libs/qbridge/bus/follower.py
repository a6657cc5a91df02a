"""Live job events: one Kafka follower per process, fanned out in memory.

:class:`TopicFollower` tails topics: it assigns itself every partition starting at
the high watermark read at start (no consumer group: each process sees every event,
nothing is committed). :class:`EventHub` follows the status-transition, final-outcome
and dead-letter topics with it, so a job submitted after :meth:`EventHub.start`
returned cannot be missed (the gateway's Solve and WatchJob wait on it).

Waiters (Solve calls, WatchJob streams) subscribe by job id and get every event after
their subscription; the hub also keeps a bounded memory of recent jobs (transitions by
seq, the final outcome, an intake rejection), returned atomically with the subscription
so nothing falls between "what happened so far" and "what happens next".

Only the events of jobs submitted through this process or watched here are decoded
(:meth:`EventHub.wants`, by message key); the rest of the stream is skipped, and the
results store answers for those jobs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter

from qbridge.bus import headers as h
from qbridge.bus.consumer import take_available
from qbridge.bus.lag import topic_partitions
from qbridge.bus.settings import KafkaSettings
from qbridge.contracts.codec import AvroCodec
from qbridge.errors import BusError, CodecError
from qbridge.topics import DEAD_LETTERS, JOB_OUTCOMES, JOB_STATUS, TopicSpec

logger = logging.getLogger(__name__)

EVENTS = Counter(
    "qbridge_gateway_events_total",
    "Job events read by the follower, by kind (transition, outcome, rejection, undecodable, "
    "skipped: another job's, not decoded).",
    ["kind"],
)

FOLLOWED: tuple[TopicSpec, ...] = (JOB_STATUS, JOB_OUTCOMES, DEAD_LETTERS)


@dataclass
class Event:
    """One event of a job.

    Attributes:
        kind: ``transition``, ``outcome`` or ``rejected``.
        value: The decoded record (a rejection: ``{"reason": ..., "error_class": ...}``).
    """

    kind: str
    value: dict[str, Any]


@dataclass
class JobMemory:
    """What the hub remembers of a recent job."""

    tenant: str | None = None
    transitions: dict[int, dict[str, Any]] = field(default_factory=dict)
    outcome: dict[str, Any] | None = None
    rejection: dict[str, Any] | None = None
    submitted_at: float | None = None

    def copy(self) -> JobMemory:
        """A snapshot (the dicts are shallow-copied)."""
        return JobMemory(
            self.tenant,
            dict(self.transitions),
            self.outcome,
            self.rejection,
            self.submitted_at,
        )


class Subscription:
    """Events of one job after the moment of subscription, in arrival order."""

    def __init__(self, job_id: str) -> None:
        """Create an empty subscription for ``job_id``."""
        self.job_id = job_id
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def put(self, event: Event) -> None:
        """Deliver an event (called by the hub)."""
        self._queue.put(event)

    def get(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


OnEvent = Callable[[str, dict[str, Any], Mapping[str, bytes]], None]
"""Called with the topic, the decoded record and the headers of each message."""

Wants = Callable[[str, bytes | str | None], bool]
"""Called with the topic and key of a message: whether to decode and dispatch it."""


class TopicFollower:
    """Tails topics from their current ends in a thread, without a consumer group."""

    def __init__(
        self,
        settings: KafkaSettings,
        codec: AvroCodec,
        topics: Sequence[TopicSpec],
        on_event: OnEvent,
        *,
        client_id: str = "qbridge-follower",
        wants: Wants | None = None,
    ) -> None:
        """Describe the follower (nothing connects before :meth:`start`).

        Args:
            settings: Kafka settings.
            codec: Decoder of the followed topics.
            topics: Topics to follow.
            on_event: Called in the follower's thread for every decoded message; an
                exception is logged and the message skipped.
            client_id: Kafka client id (also the prefix of the throwaway group id).
            wants: Called with the topic and key of each message before it is decoded;
                a message it returns False for is skipped (counted, not decoded).
        """
        self.settings = settings
        self.codec = codec
        self.on_event = on_event
        self.wants = wants
        self.client_id = client_id
        self._subjects = {t.name: t.record for t in topics}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._last_poll = 0.0

    def start(self, timeout: float = 30.0) -> None:
        """Assign every partition of the followed topics at its current end and follow.

        Raises:
            BusError: Kafka did not answer in time or a topic is missing.
        """
        consumer = Consumer(
            {
                **self.settings.client_config(),
                # Required by librdkafka, never joined: partitions are assigned by hand.
                "group.id": f"{self.client_id}-{uuid.uuid4().hex[:12]}",
                "client.id": self.client_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "latest",
                "fetch.wait.max.ms": 50,
                "enable.partition.eof": False,
            }
        )
        try:
            assignment: list[TopicPartition] = []
            for topic in self._subjects:
                for p in topic_partitions(consumer, topic, timeout):
                    _low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=timeout, cached=False
                    )
                    assignment.append(TopicPartition(topic, p, high))
            consumer.assign(assignment)
        except KafkaException as exc:
            consumer.close()
            raise BusError(f"starting the follower: {exc}") from exc
        except BusError:
            consumer.close()
            raise
        self._consumer = consumer
        self._last_poll = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=self.client_id, daemon=True)
        self._thread.start()
        logger.info("following %s from their ends", ", ".join(self._subjects))

    def stop(self) -> None:
        """Stop following and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def alive(self) -> bool:
        """False once the follower's thread has ended without being stopped."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def healthy(self) -> tuple[bool, str]:
        """Whether the follower runs and polls."""
        if self._thread is None:
            return False, "follower not started"
        if not self._thread.is_alive():
            return False, "follower died"
        if time.monotonic() - self._last_poll > 30:
            return False, "follower stalled"
        return True, "following"

    def _run(self) -> None:
        assert self._consumer is not None
        while not self._stop.is_set():
            try:
                # Not consume(500, 0.1): it holds a lone event for the whole 100 ms.
                msgs = take_available(self._consumer, 500, timeout=0.1)
            except KafkaException as exc:
                logger.warning("follower: %s", exc)
                time.sleep(0.5)
                continue
            self._last_poll = time.monotonic()
            skipped = 0
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        logger.error("follower fatal error: %s", err.str())
                        return
                    continue
                topic = msg.topic() or ""
                if self.wants is not None and not self.wants(topic, msg.key()):
                    skipped += 1
                    continue
                try:
                    decoded = self.codec.decode(msg.value(), self._subjects.get(topic))
                except CodecError as exc:
                    EVENTS.labels("undecodable").inc()
                    logger.warning("undecodable event on %s@%s: %s", topic, msg.offset(), exc)
                    continue
                try:
                    self.on_event(topic, decoded.value, h.to_dict(msg.headers()))
                except Exception:  # never let one odd event stop the follower
                    logger.exception("event on %s@%s not dispatched", topic, msg.offset())
            if skipped:
                EVENTS.labels("skipped").inc(skipped)


class EventHub:
    """Follows job events on Kafka and fans them out to subscribers."""

    def __init__(
        self,
        settings: KafkaSettings | None,
        codec: AvroCodec,
        *,
        recent_jobs: int = 10_000,
        topics: tuple[TopicSpec, ...] = FOLLOWED,
        client_id: str = "qbridge-gateway-follower",
    ) -> None:
        """Describe the hub (nothing connects before :meth:`start`).

        Args:
            settings: Kafka settings; None for a hub fed by :meth:`dispatch` only (tests).
            codec: Decoder of the followed topics.
            recent_jobs: Jobs remembered at most (least recently touched forgotten first).
            topics: Topics to follow.
            client_id: Kafka client id of the follower.
        """
        self.recent_jobs = recent_jobs
        self._follower = (
            TopicFollower(
                settings, codec, topics, self.dispatch, client_id=client_id, wants=self.wants
            )
            if settings is not None
            else None
        )
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, JobMemory] = OrderedDict()
        self._subs: dict[str, set[Subscription]] = {}
        self.started = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start following (see :meth:`TopicFollower.start`).

        Raises:
            BusError: Kafka did not answer in time or a topic is missing.
        """
        if self._follower is not None:
            self._follower.start(timeout)
        self.started = True

    def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._follower is not None:
            self._follower.stop()

    def alive(self) -> tuple[bool, str]:
        """Liveness: False once the follower has died (only a restart brings it back)."""
        if self._follower is not None and not self._follower.alive():
            return False, "event follower died"
        return True, "ok"

    def healthy(self) -> tuple[bool, str]:
        """Whether the follower runs and polls."""
        if not self.started:
            return False, "event follower not started"
        if self._follower is None:
            return True, "following"
        ok, detail = self._follower.healthy()
        return ok, "following" if ok else f"event {detail}"

    # --- events -------------------------------------------------------------------------

    def wants(self, topic: str, key: bytes | str | None) -> bool:
        """Whether an event is worth decoding: its job was submitted here or is watched.

        Job events are keyed by job id. Events of other jobs (submitted elsewhere, nobody
        waiting here) are skipped before they are decoded: under load they are most of
        the stream, and the results store answers for them. A watcher subscribes before
        it reads the stored history, so none of its job's events is skipped. Dead letters
        are keyed by the request, not the job: always decoded (they are rare).
        """
        if topic == DEAD_LETTERS.name:
            return True
        if key is None:
            return False
        job_id = key.decode(errors="replace") if isinstance(key, bytes) else key
        # Plain dict lookups, no lock: a job starts being wanted (remember_submitted,
        # subscribe) before any of its events can be published.
        return job_id in self._memory or job_id in self._subs

    def dispatch(self, topic: str, value: dict[str, Any], headers: Mapping[str, bytes]) -> None:
        """Remember an event and deliver it to the job's subscribers."""
        if topic == JOB_STATUS.name:
            job_id, event = value["job_id"], Event("transition", value)
        elif topic == JOB_OUTCOMES.name:
            job_id, event = value["job_id"], Event("outcome", value)
        elif topic == DEAD_LETTERS.name:
            rejected = _rejection(value)
            if rejected is None:
                return
            job_id, event = rejected
        else:
            return
        EVENTS.labels("rejection" if event.kind == "rejected" else event.kind).inc()
        with self._lock:
            mem = self._touch(job_id)
            if event.kind == "transition":
                seq = int(value["seq"])
                if seq in mem.transitions:
                    return  # a re-sent duplicate (at-least-once): already delivered
                mem.transitions[seq] = value
                mem.tenant = mem.tenant or value.get("tenant")
            elif event.kind == "outcome":
                if mem.outcome is not None:
                    return
                mem.outcome = value
                mem.tenant = mem.tenant or value.get("tenant")
            else:
                if mem.rejection is not None or mem.outcome is not None:
                    return
                mem.rejection = event.value
            subs = list(self._subs.get(job_id, ()))
        for sub in subs:
            sub.put(event)

    def _touch(self, job_id: str) -> JobMemory:
        mem = self._memory.get(job_id)
        if mem is None:
            mem = self._memory[job_id] = JobMemory()
            budget = len(self._memory)
            while len(self._memory) > self.recent_jobs and budget > 0:
                budget -= 1
                oldest = next(iter(self._memory))
                if oldest in self._subs:  # still watched: keep it, look at the next one
                    self._memory.move_to_end(oldest)
                else:
                    del self._memory[oldest]
        else:
            self._memory.move_to_end(job_id)
        return mem

    # --- subscribers --------------------------------------------------------------------

    def remember_submitted(self, job_id: str, tenant: str) -> None:
        """Record that this gateway published ``job_id`` for ``tenant``."""
        with self._lock:
            mem = self._touch(job_id)
            mem.tenant = mem.tenant or tenant
            mem.submitted_at = mem.submitted_at or time.monotonic()

    def subscribe(self, job_id: str) -> tuple[Subscription, JobMemory]:
        """Subscribe to ``job_id``; returns the subscription and a snapshot of the past.

        Every event is either in the snapshot or delivered to the subscription, never both
        and never neither.
        """
        sub = Subscription(job_id)
        with self._lock:
            self._subs.setdefault(job_id, set()).add(sub)
            mem = self._memory.get(job_id)
            snapshot = mem.copy() if mem is not None else JobMemory()
        return sub, snapshot

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``."""
        with self._lock:
            subs = self._subs.get(sub.job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.job_id]

    def memory(self, job_id: str) -> JobMemory | None:
        """A snapshot of what is remembered of ``job_id``."""
        with self._lock:
            mem = self._memory.get(job_id)
            return mem.copy() if mem is not None else None

    @property
    def subscribers(self) -> int:
        """Current subscriptions (all jobs)."""
        with self._lock:
            return sum(len(s) for s in self._subs.values())


def _rejection(value: Mapping[str, Any]) -> tuple[str, Event] | None:
    """An intake dead letter of a request the gateway published (it carries the job id)."""
    if value.get("service") != "intake":
        return None
    headers = value.get("original_headers") or {}
    raw = headers.get(h.JOB_ID)
    if not raw:
        return None
    job_id = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return job_id, Event(
        "rejected",
        {
            "reason": str(value.get("reason") or ""),
            "error_class": str(value.get("error_class") or ""),
        },
    )
