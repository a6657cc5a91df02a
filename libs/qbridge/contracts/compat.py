"""Schema evolution checks: can a new schema read data written with an old one?"""

from __future__ import annotations

import io
import random
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from qbridge.errors import ConfigurationError


def check_can_read(reader: dict[str, Any], writer: dict[str, Any], samples: int = 50) -> None:
    """Check that ``reader`` resolves data written with ``writer``.

    Random records of the writer schema (seeded, so the check is repeatable) are
    written with it and read back through Avro schema resolution.

    Raises:
        ConfigurationError: The reader cannot read the writer's data.
    """
    state = random.getstate()
    random.seed(20261122)
    try:
        records = list(generate_many(writer, samples))
    finally:
        random.setstate(state)
    parsed_writer = parse_schema(writer)
    parsed_reader = parse_schema(reader)
    for record in records:
        buf = io.BytesIO()
        schemaless_writer(buf, parsed_writer, record)
        buf.seek(0)
        try:
            schemaless_reader(buf, parsed_writer, parsed_reader)
        except Exception as exc:
            raise ConfigurationError(
                f"{reader.get('name')}: new schema cannot read old data: {exc}"
            ) from exc
