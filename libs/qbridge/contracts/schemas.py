"""Loading the Avro sources in ``schemas/avro``.

Each named type lives in its own ``<namespace>.<Name>.avsc`` file; fastavro
resolves references between files. What gets registered is the resolved schema
(each named type defined inline at its first use), so a registered version is a
frozen snapshot that does not change when a shared type is edited later.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fastavro.schema import load_schema, to_parsing_canonical_form

from qbridge.errors import ConfigurationError


def schemas_dir() -> Path:
    """Where the ``.avsc`` sources live (``QBRIDGE_SCHEMAS_DIR`` overrides)."""
    env = os.environ.get("QBRIDGE_SCHEMAS_DIR")
    if env:
        return Path(env)
    # libs/qbridge/contracts/schemas.py -> repo root; images copy schemas/ to the same place.
    return Path(__file__).resolve().parents[3] / "schemas" / "avro"


def load_source(subject: str, directory: Path | None = None) -> dict[str, Any]:
    """Load and resolve the current source schema of ``subject``.

    Args:
        subject: Full record name, e.g. ``qbridge.JobEnvelope``.
        directory: Where the ``.avsc`` files are; defaults to :func:`schemas_dir`.

    Returns:
        The resolved schema as plain JSON data (no fastavro parse markers).

    Raises:
        ConfigurationError: The file is missing or does not parse.
    """
    path = (directory or schemas_dir()) / f"{subject}.avsc"
    if not path.is_file():
        raise ConfigurationError(f"no Avro schema source for {subject} at {path}")
    try:
        parsed = load_schema(str(path), _write_hint=False)
    except Exception as exc:
        raise ConfigurationError(f"schema {path} does not parse: {exc}") from exc
    # load_schema inlines each named type at its first use and refers to it by name after.
    resolved: dict[str, Any] = json.loads(json.dumps(parsed))
    return resolved


def fingerprint(schema: dict[str, Any]) -> str:
    """SHA-256 of the Parsing Canonical Form (ignores docs and defaults' layout)."""
    canonical = to_parsing_canonical_form(schema)
    return hashlib.sha256(canonical.encode()).hexdigest()
