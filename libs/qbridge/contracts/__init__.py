"""Contracts: Avro schemas, the schema registry, and the Confluent-framed codec."""

from qbridge.contracts.codec import AvroCodec, Decoded
from qbridge.contracts.registry import (
    ConfluentSchemaRegistry,
    FileSchemaRegistry,
    RegisteredSchema,
    SchemaRegistry,
    default_registry,
)

__all__ = [
    "AvroCodec",
    "ConfluentSchemaRegistry",
    "Decoded",
    "FileSchemaRegistry",
    "RegisteredSchema",
    "SchemaRegistry",
    "default_registry",
]
