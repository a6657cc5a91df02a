"""results-sink batch writes: one transaction per batch, the same rows as record by record."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from qbridge.bus import BusProducer, KafkaSettings, Record, ensure_topics
from qbridge.contracts import AvroCodec
from qbridge.db.pool import make_pool
from qbridge.topics import DEAD_LETTERS
from results_sink.app import ResultsSinkApp
from results_sink.mapping import InvalidRecordError, TransitionRow
from results_sink.migrate import migrate
from results_sink.store import ResultsStore
from tests.integration.test_results_sink import (
    T0,
    TOPICS,
    Message,
    complete,
    counts,
    drain,
    expected_counts,
    job_messages,
    make_consumer,
    send,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(database_url: str) -> Iterator[ResultsStore]:
    migrate(database_url)
    pool = make_pool(database_url, min_size=1, max_size=2, timeout_s=2.0)
    try:
        yield ResultsStore(pool)
    finally:
        pool.close()


@pytest.fixture
def codec_rt(codec: AvroCodec) -> Callable[[list[Message]], list[Record]]:
    """Messages as the consumer hands them over (encoded and decoded)."""

    def records(messages: list[Message]) -> list[Record]:
        out = []
        for i, (t, v) in enumerate(messages):
            value = codec.decode(codec.encode(t.record, v)).value
            out.append(Record(t.name, 0, i, v["job_id"].encode(), value, t.record, {}, 0))
        return out

    return records


def test_a_batch_in_any_order_with_duplicates_stores_one_row_per_entity(
    database_url: str,
    store: ResultsStore,
    unique: str,
    codec_rt: Callable[[list[Message]], list[Record]],
) -> None:
    job_ids = [f"job-{unique}-b{i}" for i in range(6)]
    messages: list[Message] = []
    for i, job_id in enumerate(job_ids):
        messages += job_messages(job_id, f"tenant-{unique}", failed_attempt=(i % 2 == 1))
    expected = expected_counts(messages)
    app = ResultsSinkApp(store)
    # Outcomes before envelopes and every record twice, in ONE batch.
    app.handle_batch(codec_rt(list(reversed(messages)) + messages))
    assert counts(database_url, job_ids) == expected
    assert complete(database_url, job_ids, expected)()
    # The same batch again: nothing changes.
    results = store.record_batch([app._rows[r.subject](r.value) for r in codec_rt(messages)])
    assert set(results) == {"duplicate"}
    assert counts(database_url, job_ids) == expected


def test_a_batch_with_a_bad_record_fails_whole_and_stores_nothing(
    database_url: str,
    store: ResultsStore,
    unique: str,
    codec_rt: Callable[[list[Message]], list[Record]],
) -> None:
    job_id = f"job-{unique}-bad"
    messages = job_messages(job_id, f"tenant-{unique}")
    app = ResultsSinkApp(store)
    records = codec_rt(messages)
    bad: dict[str, Any] = {**records[-1].value, "completed_at": "not a time"}
    records[-1] = Record(records[-1].topic, 0, 99, b"k", bad, records[-1].subject, {}, 0)
    with pytest.raises((InvalidRecordError, TypeError, ValueError)):
        app.handle_batch(records)
    assert counts(database_url, [job_id])["jobs"] == 0, "the batch is one transaction"


def test_the_consumer_stores_batches_with_few_commits(
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
    database_url: str,
    store: ResultsStore,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Count this store's own write transactions: the database-wide statistic also moves
    # with other tests' services sharing the database.
    transactions = 0
    real_tx = store._tx

    @contextlib.contextmanager
    def counting_tx() -> Iterator[Any]:
        nonlocal transactions
        with real_tx() as cur:
            yield cur
        transactions += 1

    monkeypatch.setattr(store, "_tx", counting_tx)
    ensure_topics(kafka_settings, [*TOPICS, DEAD_LETTERS])
    job_ids = [f"job-{unique}-c{i}" for i in range(20)]
    messages: list[Message] = []
    for job_id in job_ids:
        messages += job_messages(job_id, f"tenant-{unique}")
    expected = expected_counts(messages)
    producer = BusProducer(kafka_settings, codec, client_id=f"rs-{unique}")
    consumer, _, _ = make_consumer(kafka_settings, codec, f"rs-batch-{unique}", unique)
    send(producer, messages)
    app = ResultsSinkApp(store)
    try:
        for _ in range(200):
            if complete(database_url, job_ids, expected)():
                break
            consumer.process_batch(app.handle, timeout=0.5, batch_handler=app.handle_batch)
        drain(consumer, app.handle, lambda: True)
    finally:
        consumer.close()
    assert counts(database_url, job_ids) == expected
    # The group starts at the topics' end, but other tests' services may still publish.
    assert consumer.processed >= len(messages)
    # Record by record would commit once per record; batches commit far less.
    assert 0 < transactions < consumer.processed // 2, (transactions, consumer.processed)


# Transitions of one job, some out of order, a final one followed by a later non-final
# one, a second final one, and routes that are missing on some.
_T = (
    (2, "routed", "classical", False),
    (1, "accepted", None, False),
    (4, "succeeded", None, True),
    (3, "running", "quantum", False),
    (5, "running", "classical", False),  # after a final state: ignored
    (6, "failed", None, True),  # another final transition moves it still
)


@pytest.mark.parametrize(
    ("stored", "batch"),
    [
        ([], [0, 1, 2, 3, 4, 5]),
        ([], [3, 1, 0]),
        ([1, 0], [4, 3, 2]),
        ([1, 0, 3, 2], [4, 5]),
        ([1, 0, 3], [4]),
        ([1, 0, 3, 2, 4, 5], [0, 1, 2, 3]),
    ],
)
def test_a_batch_moves_the_job_status_as_its_transitions_one_by_one_in_seq_order(
    store: ResultsStore, unique: str, stored: list[int], batch: list[int]
) -> None:
    def rows(job_id: str, which: list[int]) -> list[TransitionRow]:
        return [
            TransitionRow(
                job_id=job_id, tenant="t", seq=_T[i][0], from_status=None, to_status=_T[i][1],
                reason="", attempt=1, route=_T[i][2], backend=None, correlation_id="c",
                at=T0 + timedelta(seconds=_T[i][0]),
            )
            for i in which
        ]  # fmt: skip

    one_by_one, batched = f"job-{unique}-single", f"job-{unique}-batch"
    for job_id in (one_by_one, batched):
        store.record_batch(rows(job_id, stored))
    for row in sorted(rows(one_by_one, batch), key=lambda r: r.seq):
        store.record_transition(row)
    store.record_batch(rows(batched, batch))

    def state(job_id: str) -> tuple[Any, ...]:
        job = store.get_job(job_id)
        assert job is not None
        return tuple(job[k] for k in ("status", "status_seq", "status_at", "route", "final_at"))

    assert state(batched) == state(one_by_one)
    assert len(store.transitions(batched)) == len({*stored, *batch})
