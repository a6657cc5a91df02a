"""Avro with the Confluent wire framing: magic byte 0, 4-byte big-endian schema id, body.

Writers use the latest version of a subject; readers resolve whatever version a
message was written with to the latest one, so old messages stay readable.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from qbridge.contracts.registry import SchemaRegistry
from qbridge.errors import (
    BadMagicByteError,
    CodecError,
    MessageTooLargeError,
    SchemaMismatchError,
    TruncatedMessageError,
)

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

UnionTags = tuple[tuple[str, dict[frozenset[str], str], str | None], ...]
"""Per top-level field holding a union with records: (field, field names -> record name,
the record if it is the union's only one)."""


def union_tags(schema: Mapping[str, Any]) -> UnionTags:
    """Which record of each top-level union with records a plain dict value is.

    fastavro picks the branch of a union by validating the value against every branch
    in turn (a full deep check per candidate problem type, or of the one record of a
    ``["null", record]``, on every write, on top of the validation before it). A value
    in tuple notation ``(name, value)`` skips that search. A decoded record's keys are
    exactly its record's field names, so the key set names the branch; key sets shared
    by two records are left out (fastavro's search then decides, as before).

    Args:
        schema: An expanded record schema (named types defined inline).

    Returns:
        ``(field, {frozenset(field names): record name}, the only record or None)`` per
        such field.
    """
    records: dict[str, frozenset[str]] = {}

    def collect(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                collect(item)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind == "record":
                records[node["name"]] = frozenset(f["name"] for f in node["fields"])
                for f in node["fields"]:
                    collect(f["type"])
            elif kind == "array":
                collect(node["items"])
            elif kind == "map":
                collect(node["values"])
            elif isinstance(kind, list | dict):
                collect(kind)

    collect(schema)
    out = []
    for f in schema.get("fields", []):
        branches = f["type"] if isinstance(f["type"], list) else []
        names = [b["name"] if isinstance(b, dict) else b for b in branches]
        named = [n for n in names if isinstance(n, str) and n in records]
        if not named:
            continue
        by_keys: dict[frozenset[str], str] = {}
        shared: set[frozenset[str]] = set()
        for n in named:
            keys = records[n]
            if keys in by_keys:
                shared.add(keys)
            by_keys[keys] = n
        only = named[0] if len(named) == 1 else None
        out.append((f["name"], {k: n for k, n in by_keys.items() if k not in shared}, only))
    return tuple(out)


@dataclass(frozen=True)
class Decoded:
    """A decoded message.

    Attributes:
        subject: Record name of the writer's schema.
        schema_id: Id from the framing.
        value: The record, resolved to the latest version of its subject.
    """

    subject: str
    schema_id: int
    value: dict[str, Any]


class AvroCodec:
    """Encode and decode Confluent-framed Avro."""

    def __init__(self, registry: SchemaRegistry, *, max_decode_bytes: int | None = None) -> None:
        """Create a codec.

        Args:
            registry: Source of schema ids and schemas.
            max_decode_bytes: Byte budget of a message to decode; larger ones are
                rejected before any parsing. ``None`` for no limit.
        """
        self.registry = registry
        self.max_decode_bytes = max_decode_bytes
        self._tags: dict[int, UnionTags] = {}

    def encode(self, subject: str, record: Mapping[str, Any]) -> bytes:
        """Encode ``record`` with the latest schema of ``subject``.

        Raises:
            CodecError: The record does not match the schema (the message names the field).
            SchemaMismatchError: Unknown subject.
        """
        reg = self.registry.latest(subject)
        tags = self._tags.get(reg.schema_id)
        if tags is None:
            tags = self._tags[reg.schema_id] = union_tags(reg.schema)
        datum = dict(record)
        for field, by_keys, only in tags:
            value = datum.get(field)
            if isinstance(value, dict):
                name = only or by_keys.get(frozenset(value))
                if name is not None:
                    datum[field] = (name, value)
        # Validated before writing: fastavro's writer silently writes some mistyped values
        # (1.5 into a long, "1" into a double). A yes/no validation is about twice as fast
        # as one building error objects for every union branch it tries; those are built
        # only to explain.
        if not validate(datum, reg.parsed, raise_errors=False, strict=False):
            try:
                validate(datum, reg.parsed, raise_errors=True, strict=False)
            except ValidationError as exc:
                raise CodecError(f"{subject} record does not match its schema: {exc}") from exc
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC_BYTE, reg.schema_id))
        schemaless_writer(buf, reg.parsed, datum)
        return buf.getvalue()

    def decode(self, data: bytes | None, expected_subject: str | None = None) -> Decoded:
        """Decode a framed message.

        Args:
            data: The message value.
            expected_subject: If given, the writer's record must be this subject.

        Raises:
            MessageTooLargeError: Longer than ``max_decode_bytes`` (nothing was parsed).
            TruncatedMessageError: Shorter than the framing, or the body ends early.
            BadMagicByteError: First byte is not 0.
            UnknownSchemaError: The id is unknown to the registry.
            SchemaMismatchError: Written with another record type.
            CodecError: The body is corrupt.
        """
        if data is None or len(data) < _HEADER.size:
            size = 0 if data is None else len(data)
            raise TruncatedMessageError(
                f"message of {size} bytes is shorter than the {_HEADER.size}-byte framing"
            )
        if self.max_decode_bytes is not None and len(data) > self.max_decode_bytes:
            raise MessageTooLargeError(
                f"message of {len(data)} bytes is too large: the limit is "
                f"{self.max_decode_bytes} bytes"
            )
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise BadMagicByteError(f"magic byte is {magic & 0xFF:#04x}, expected 0x00")
        writer = self.registry.by_id(schema_id)
        subject = expected_subject or writer.subject
        if expected_subject is not None and writer.subject != expected_subject:
            raise SchemaMismatchError(
                f"message written as {writer.subject} (id {schema_id}), expected {expected_subject}"
            )
        reader = self.registry.latest(subject)
        buf = io.BytesIO(data)
        buf.seek(_HEADER.size)
        try:
            value = schemaless_reader(buf, writer.parsed, reader.parsed)
        except (EOFError, struct.error) as exc:
            raise TruncatedMessageError(
                f"{writer.subject} body ends early at byte {buf.tell()} of {len(data)}"
            ) from exc
        except Exception as exc:
            raise CodecError(f"corrupt {writer.subject} body: {exc}") from exc
        if buf.tell() != len(data):
            raise CodecError(f"{writer.subject} body has {len(data) - buf.tell()} trailing bytes")
        if not isinstance(value, dict):
            raise CodecError(f"{writer.subject} body is not a record")
        return Decoded(writer.subject, schema_id, value)
