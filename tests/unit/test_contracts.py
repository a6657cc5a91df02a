"""Avro contracts: registry consistency, evolution, Confluent framing, typed errors."""

from __future__ import annotations

import copy
import io
import random
import struct
from datetime import UTC, datetime

import pytest
from fastavro import schemaless_writer
from fastavro.utils import generate_many

from qbridge import topics
from qbridge.contracts import AvroCodec, FileSchemaRegistry
from qbridge.contracts.compat import check_can_read
from qbridge.contracts.registry import pending_changes, registry_file
from qbridge.errors import (
    BadMagicByteError,
    CodecError,
    ConfigurationError,
    SchemaMismatchError,
    TruncatedMessageError,
    UnknownSchemaError,
)


@pytest.fixture(scope="module")
def registry() -> FileSchemaRegistry:
    return FileSchemaRegistry(registry_file())


@pytest.fixture(scope="module")
def codec(registry: FileSchemaRegistry) -> AvroCodec:
    return AvroCodec(registry)


def test_every_topic_subject_is_registered_and_up_to_date(registry: FileSchemaRegistry) -> None:
    assert set(topics.subjects()) <= set(registry.subjects())
    assert pending_changes() == [], "run `make schemas` after editing schemas/avro"


def test_schema_ids_are_unique_and_versions_consecutive(registry: FileSchemaRegistry) -> None:
    ids = [v.schema_id for s in registry.subjects() for v in registry.versions(s)]
    assert len(ids) == len(set(ids))
    for subject in registry.subjects():
        assert [v.version for v in registry.versions(subject)] == list(
            range(1, len(registry.versions(subject)) + 1)
        )


def test_every_new_version_reads_data_of_the_previous_one(registry: FileSchemaRegistry) -> None:
    pairs = [
        (older, newer)
        for s in registry.subjects()
        for older, newer in zip(registry.versions(s), registry.versions(s)[1:], strict=False)
    ]
    assert pairs, "no subject has two versions: the evolution check would check nothing"
    for older, newer in pairs:
        check_can_read(reader=newer.schema, writer=older.schema)


def test_old_problem_request_decodes_with_new_defaults(
    registry: FileSchemaRegistry, codec: AvroCodec
) -> None:
    v1 = registry.versions("qbridge.ProblemRequest")[0]
    latest = registry.latest("qbridge.ProblemRequest")
    assert "seed" not in {f["name"] for f in v1.schema["fields"]}
    record = {
        "request_id": "r1",
        "idempotency_key": None,
        "tenant": "acme",
        "problem_type": "maxcut",
        "problem": {"num_nodes": 2, "edges": [{"u": 0, "v": 1, "weight": 2.5}]},
        "timeout_ms": 1000,
        "fallback_policy": "auto",
        "priority": 5,
        "shot_budget": None,
        "correlation_id": None,
        "tags": {},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, v1.schema_id))
    schemaless_writer(buf, v1.parsed, record)
    decoded = codec.decode(buf.getvalue(), expected_subject="qbridge.ProblemRequest")
    assert decoded.schema_id == v1.schema_id
    assert decoded.value["seed"] is None
    assert decoded.value["problem"]["edges"][0]["weight"] == 2.5
    # Writers always use the newest version.
    assert codec.encode("qbridge.ProblemRequest", decoded.value)[1:5] == struct.pack(
        ">I", latest.schema_id
    )


def test_incompatible_change_is_rejected(registry: FileSchemaRegistry) -> None:
    old = registry.latest("qbridge.JobStatusTransition").schema
    new = copy.deepcopy(old)
    new["fields"].append({"name": "required_without_default", "type": "string"})
    with pytest.raises(ConfigurationError, match="cannot read old data"):
        check_can_read(reader=new, writer=old)


@pytest.mark.parametrize("subject", topics.subjects())
def test_round_trip_of_generated_records(codec: AvroCodec, subject: str) -> None:
    schema = codec.registry.latest(subject).schema
    state = random.getstate()
    random.seed(7)
    try:
        records = list(generate_many(schema, 20))
    finally:
        random.setstate(state)
    for record in records:
        data = codec.encode(subject, record)
        assert data[0] == 0
        decoded = codec.decode(data, expected_subject=subject)
        assert decoded.subject == subject
        assert codec.encode(subject, decoded.value) == data


def test_union_values_are_tagged_by_their_field_names(codec: AvroCodec) -> None:
    from qbridge.contracts.codec import union_tags

    tags = {
        f: (by_keys, only)
        for f, by_keys, only in union_tags(codec.registry.latest("qbridge.WorkItem").schema)
    }
    by_keys, only = tags["problem"]
    assert only is None  # seven problem records: the key set decides
    assert by_keys[frozenset({"num_nodes", "edges"})] == "qbridge.MaxCutProblem"
    outcome = {
        f: only for f, _, only in union_tags(codec.registry.latest("qbridge.JobOutcome").schema)
    }
    assert outcome["solution"] == "qbridge.Solution"


@pytest.mark.parametrize("subject", ["qbridge.WorkItem", "qbridge.JobOutcome"])
def test_tagging_writes_the_same_bytes_as_fastavros_union_search(
    codec: AvroCodec, subject: str
) -> None:
    reg = codec.registry.latest(subject)
    state = random.getstate()
    random.seed(11)
    try:
        records = list(generate_many(reg.schema, 30))
    finally:
        random.setstate(state)
    for record in records:
        plain = io.BytesIO()
        schemaless_writer(plain, reg.parsed, record)
        assert codec.encode(subject, record)[5:] == plain.getvalue()


def test_a_union_value_of_no_known_shape_still_fails_typed(codec: AvroCodec) -> None:
    decoded = codec.decode(_work_item(codec), expected_subject="qbridge.WorkItem").value
    with pytest.raises(CodecError, match="does not match"):
        codec.encode("qbridge.WorkItem", {**decoded, "problem": {"num_nodes": "eight"}})
    # the tag picks the branch, the validation still checks the value's fields
    bad = {**decoded, "problem": {**decoded["problem"], "num_nodes": 1.5}}
    with pytest.raises(CodecError, match="does not match"):
        codec.encode("qbridge.WorkItem", bad)


def _work_item(codec: AvroCodec) -> bytes:
    return codec.encode(
        "qbridge.WorkItem",
        {
            "work_id": "w",
            "job_id": "j",
            "attempt": 1,
            "route": "classical",
            "backend": "exact",
            "tenant": "t",
            "problem_type": "maxcut",
            "problem": {"num_nodes": 2, "edges": [{"u": 0, "v": 1, "weight": 1.0}]},
            "time_limit_ms": 100,
            "shots": 0,
            "seed": 1,
            "top_n": 1,
            "priority": 5,
            "deadline_at": datetime(2026, 1, 1, tzinfo=UTC),
            "correlation_id": "c",
            "enqueued_at": datetime(2026, 1, 1, tzinfo=UTC),
        },
    )


def _status(codec: AvroCodec) -> bytes:
    return codec.encode(
        "qbridge.JobStatusTransition",
        {
            "job_id": "j",
            "tenant": "t",
            "seq": 1,
            "to_status": "accepted",
            "correlation_id": "c",
            "at": datetime(2026, 1, 1, tzinfo=UTC),
        },
    )


def test_bad_magic_byte(codec: AvroCodec) -> None:
    data = b"\x01" + _status(codec)[1:]
    with pytest.raises(BadMagicByteError, match="magic byte is 0x01"):
        codec.decode(data)


def test_unknown_schema_id(codec: AvroCodec) -> None:
    data = b"\x00" + struct.pack(">I", 999_999) + _status(codec)[5:]
    with pytest.raises(UnknownSchemaError, match="999999"):
        codec.decode(data)


@pytest.mark.parametrize("cut", [0, 3, 5, 8])
def test_truncated_messages(codec: AvroCodec, cut: int) -> None:
    with pytest.raises(TruncatedMessageError):
        codec.decode(_status(codec)[:cut])


def test_none_value_is_truncated(codec: AvroCodec) -> None:
    with pytest.raises(TruncatedMessageError):
        codec.decode(None)


def test_trailing_bytes(codec: AvroCodec) -> None:
    with pytest.raises(CodecError, match="trailing"):
        codec.decode(_status(codec) + b"\x00\x00")


def test_wrong_subject(codec: AvroCodec) -> None:
    with pytest.raises(SchemaMismatchError, match=r"expected qbridge\.JobEnvelope"):
        codec.decode(_status(codec), expected_subject="qbridge.JobEnvelope")


def test_encode_rejects_records_that_do_not_match(codec: AvroCodec) -> None:
    with pytest.raises(CodecError, match="does not match"):
        codec.encode("qbridge.JobStatusTransition", {"job_id": 3})


def test_errors_are_one_tree() -> None:
    from qbridge.errors import ErrorClass, QBridgeError, classify

    for exc_type in (BadMagicByteError, UnknownSchemaError, TruncatedMessageError):
        exc = exc_type("x")
        assert isinstance(exc, QBridgeError)
        assert classify(exc) is ErrorClass.INVALID_INPUT
    assert classify(TimeoutError()) is ErrorClass.TRANSIENT
    assert classify(KeyError()) is ErrorClass.DEFECT
