"""Schema registries: where schema ids come from.

By default ids come from ``schemas/registry.json``, kept in the repository:
every registered version of every subject, as a frozen expanded snapshot.
When ``SCHEMA_REGISTRY_URL`` is set, a Confluent-compatible Schema Registry
is used instead (subjects follow the record-name strategy).

``python -m qbridge.contracts check`` fails if a source schema changed
without being registered; ``... register`` appends new versions after checking
that each new version can read data written with the previous one.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from qbridge import topics
from qbridge.contracts.schemas import fingerprint, load_source, schemas_dir
from qbridge.errors import ConfigurationError, SchemaMismatchError, UnknownSchemaError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredSchema:
    """One registered version of a subject.

    Attributes:
        subject: Full record name.
        version: 1, 2, ... per subject.
        schema_id: Global id written in the Confluent framing.
        schema: The expanded schema JSON.
        parsed: The fastavro-parsed schema, ready for reading/writing.
    """

    subject: str
    version: int
    schema_id: int
    schema: dict[str, Any]
    parsed: Any


class SchemaRegistry(abc.ABC):
    """Maps subjects to their latest schema (for writing) and ids to schemas (for reading)."""

    @abc.abstractmethod
    def latest(self, subject: str) -> RegisteredSchema:
        """The newest version of ``subject``: what writers use and readers resolve to.

        Raises:
            SchemaMismatchError: Unknown subject.
        """

    @abc.abstractmethod
    def by_id(self, schema_id: int) -> RegisteredSchema:
        """The schema a message was written with.

        Raises:
            UnknownSchemaError: No schema has this id.
        """


def _entry(subject: str, version: int, schema_id: int, schema: dict[str, Any]) -> RegisteredSchema:
    return RegisteredSchema(subject, version, schema_id, schema, parse_schema(schema))


class FileSchemaRegistry(SchemaRegistry):
    """Schema ids from a JSON registry file kept in the repository."""

    def __init__(self, path: Path) -> None:
        """Load the registry file.

        Args:
            path: Path of ``registry.json``.

        Raises:
            ConfigurationError: Missing or malformed file.
        """
        self.path = path
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read schema registry file {path}: {exc}") from exc
        self._by_subject: dict[str, list[RegisteredSchema]] = {}
        self._by_id: dict[int, RegisteredSchema] = {}
        for subject, versions in data.get("subjects", {}).items():
            for v in versions:
                entry = _entry(subject, int(v["version"]), int(v["id"]), v["schema"])
                self._by_subject.setdefault(subject, []).append(entry)
                self._by_id[entry.schema_id] = entry
        for versions in self._by_subject.values():
            versions.sort(key=lambda e: e.version)

    def subjects(self) -> list[str]:
        """Registered subjects."""
        return sorted(self._by_subject)

    def versions(self, subject: str) -> list[RegisteredSchema]:
        """All versions of ``subject``, oldest first."""
        return list(self._by_subject.get(subject, []))

    def latest(self, subject: str) -> RegisteredSchema:
        versions = self._by_subject.get(subject)
        if not versions:
            raise SchemaMismatchError(f"subject {subject!r} is not registered in {self.path}")
        return versions[-1]

    def by_id(self, schema_id: int) -> RegisteredSchema:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(f"unknown schema id {schema_id}") from None


class ConfluentSchemaRegistry(SchemaRegistry):
    """A Confluent-compatible Schema Registry (record-name subjects, auto-registration)."""

    def __init__(self, url: str, auto_register: bool = True) -> None:
        """Connect lazily to the registry at ``url``.

        Args:
            url: Registry base URL.
            auto_register: Register the current source schema of a subject the first
                time it is written (the registry enforces compatibility).
        """
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})
        self._auto_register = auto_register
        self._lock = threading.Lock()
        self._latest: dict[str, RegisteredSchema] = {}
        self._ids: dict[int, RegisteredSchema] = {}

    def latest(self, subject: str) -> RegisteredSchema:
        from confluent_kafka.schema_registry import Schema

        with self._lock:
            if subject in self._latest:
                return self._latest[subject]
            schema = load_source(subject)
            if self._auto_register:
                source = Schema(schema_str=json.dumps(schema), schema_type="AVRO")
                self._client.register_schema(subject, source)
                reg = self._client.lookup_schema(subject, source)
            else:
                reg = self._client.get_latest_version(subject)
                schema = json.loads(reg.schema.schema_str or "{}")
            entry = _entry(subject, int(reg.version or 0), int(reg.schema_id or 0), schema)
            self._latest[subject] = entry
            self._ids[entry.schema_id] = entry
            return entry

    def by_id(self, schema_id: int) -> RegisteredSchema:
        with self._lock:
            if schema_id in self._ids:
                return self._ids[schema_id]
        try:
            fetched = self._client.get_schema(schema_id)
        except Exception as exc:
            raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from exc
        schema = json.loads(fetched.schema_str or "{}")
        name = schema.get("name", "")
        subject = name if "." in name else f"{schema.get('namespace', '')}.{name}"
        entry = _entry(subject, 0, schema_id, schema)
        with self._lock:
            self._ids[schema_id] = entry
        return entry


def registry_file() -> Path:
    """Default path of the registry file (next to the ``.avsc`` sources)."""
    return schemas_dir().parent / "registry.json"


def default_registry() -> SchemaRegistry:
    """The Confluent registry if ``SCHEMA_REGISTRY_URL`` is set, else the repo's file."""
    url = os.environ.get("SCHEMA_REGISTRY_URL")
    if url:
        return ConfluentSchemaRegistry(url)
    return FileSchemaRegistry(registry_file())


# --- maintenance of the registry file -----------------------------------------------------


def pending_changes(path: Path | None = None) -> list[str]:
    """Subjects whose current source differs from their latest registered version."""
    path = path or registry_file()
    data = json.loads(path.read_text()) if path.exists() else {"subjects": {}}
    changed = []
    for subject in topics.subjects():
        versions = data["subjects"].get(subject, [])
        if not versions or versions[-1]["fingerprint"] != fingerprint(load_source(subject)):
            changed.append(subject)
    return changed


def register(path: Path | None = None) -> list[tuple[str, int, int]]:
    """Append a new version for every subject whose source changed.

    Each new version must be able to read data written with the previous one
    (backward compatibility); this is checked with fastavro schema resolution.

    Returns:
        ``(subject, version, id)`` of each new registration.

    Raises:
        ConfigurationError: A change is not backward compatible.
    """
    from qbridge.contracts.compat import check_can_read

    path = path or registry_file()
    data = json.loads(path.read_text()) if path.exists() else {"subjects": {}}
    next_id = 1 + max((v["id"] for vs in data["subjects"].values() for v in vs), default=0)
    added = []
    for subject in pending_changes(path):
        schema = load_source(subject)
        versions = data["subjects"].setdefault(subject, [])
        if versions:
            check_can_read(reader=schema, writer=versions[-1]["schema"])
        version = len(versions) + 1
        versions.append(
            {
                "version": version,
                "id": next_id,
                "fingerprint": fingerprint(schema),
                "schema": schema,
            }
        )
        added.append((subject, version, next_id))
        next_id += 1
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return added
