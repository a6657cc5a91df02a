"""The event hub decodes only the events of jobs submitted or watched in its process."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from qbridge.bus.follower import EventHub, TopicFollower
from qbridge.bus.settings import KafkaSettings
from qbridge.contracts import AvroCodec, default_registry
from qbridge.topics import DEAD_LETTERS, JOB_OUTCOMES, JOB_STATUS


def test_wants_only_jobs_submitted_or_watched_here() -> None:
    hub = EventHub(None, AvroCodec(default_registry()))
    assert not hub.wants(JOB_STATUS.name, b"elsewhere")
    assert not hub.wants(JOB_STATUS.name, None)

    hub.remember_submitted("mine", "t1")
    assert hub.wants(JOB_STATUS.name, b"mine")
    assert hub.wants(JOB_OUTCOMES.name, "mine")

    sub, _ = hub.subscribe("watched")
    assert hub.wants(JOB_OUTCOMES.name, b"watched")
    hub.unsubscribe(sub)
    assert not hub.wants(JOB_OUTCOMES.name, b"watched")

    # Dead letters are keyed by the request: always decoded (the job id is inside).
    assert hub.wants(DEAD_LETTERS.name, b"tenant:key")
    assert hub.wants(DEAD_LETTERS.name, None)


class _Msg:
    def __init__(self, topic: str, key: bytes, value: bytes) -> None:
        self._topic, self._key, self._value = topic, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def offset(self) -> int:
        return 0


class _OneBatch:
    """A consumer stand-in that returns one batch, then stops the follower."""

    def __init__(self, msgs: list[_Msg], stop: threading.Event) -> None:
        self.msgs, self.stop = msgs, stop

    def poll(self, timeout: float) -> _Msg | None:
        if not self.msgs:
            self.stop.set()
            return None
        return self.msgs.pop(0)

    def consume(self, n: int, timeout: float) -> list[_Msg]:
        taken, self.msgs = self.msgs[:n], self.msgs[n:]
        return taken


class _CountingCodec(AvroCodec):
    def __init__(self) -> None:
        super().__init__(default_registry())
        self.decoded = 0

    def decode(self, data: bytes | None, expected_subject: str | None = None) -> Any:
        self.decoded += 1
        return super().decode(data, expected_subject)


def _transition(codec: AvroCodec, job_id: str, seq: int) -> bytes:
    return codec.encode(
        JOB_STATUS.record,
        {
            "job_id": job_id,
            "tenant": "t1",
            "seq": seq,
            "from_status": None,
            "to_status": "accepted",
            "reason": "",
            "reason_code": None,
            "attempt": None,
            "route": None,
            "backend": None,
            "correlation_id": "c",
            "at": datetime(2026, 1, 1, tzinfo=UTC),
        },
    )


def test_follower_skips_unwanted_events_without_decoding_them() -> None:
    codec = _CountingCodec()
    seen: list[str] = []
    wanted = {"mine"}
    follower = TopicFollower(
        KafkaSettings(),
        codec,
        [JOB_STATUS],
        lambda topic, value, headers: seen.append(value["job_id"]),
        wants=lambda topic, key: key is not None and key.decode() in wanted,
    )
    msgs = [
        _Msg(JOB_STATUS.name, job.encode(), _transition(codec, job, seq))
        for seq, job in enumerate(["other", "mine", "other", "another", "mine"], start=1)
    ]
    codec.decoded = 0
    follower._consumer = _OneBatch(msgs, follower._stop)  # type: ignore[assignment]
    follower._run()
    assert seen == ["mine", "mine"]
    assert codec.decoded == 2  # the three other events were never decoded
