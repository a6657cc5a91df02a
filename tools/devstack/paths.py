"""Well-known locations of the dev stack (repo root, caches, env file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

#: Environment variable overriding the cache root (default ``<repo>/.cache``).
CACHE_DIR_ENV = "QBRIDGE_CACHE_DIR"
#: Environment variable overriding the env file written by ``devstack up``.
ENV_FILE_ENV = "QBRIDGE_DEVSTACK_ENV"

_REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_root() -> Path:
    """Return the repository root (the directory that contains ``tools/``).

    Returns:
        Absolute path of the repository root.
    """
    return _REPO_ROOT


def _default_cache_root() -> Path:
    """Create ``<repo>/.cache`` (self-ignored by git) and return it."""
    root = _REPO_ROOT / ".cache"
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by tools/devstack: local caches, never committed\n*\n")
    return root


def cache_root() -> Path:
    """Return the cache root, creating it if needed.

    ``$QBRIDGE_CACHE_DIR`` wins; otherwise ``<repo>/.cache``, which gets a
    ``.gitignore`` containing ``*`` so that nothing in it is ever committed.

    Returns:
        Absolute path of an existing directory.
    """
    override = os.environ.get(CACHE_DIR_ENV)
    if not override:
        return _default_cache_root()
    root = Path(override).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def default_env_file() -> Path:
    """Return the env file written by ``python -m devstack up``.

    ``$QBRIDGE_DEVSTACK_ENV`` wins; otherwise ``<repo>/.cache/devstack.env``.

    Returns:
        Path of the env file (its directory is created).
    """
    override = os.environ.get(ENV_FILE_ENV)
    if override:
        path = Path(override).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    return _default_cache_root() / "devstack.env"
