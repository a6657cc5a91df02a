"""CLI: ``python -m qbridge.contracts check|register`` (schema registry file upkeep)."""

from __future__ import annotations

import argparse
import sys

from qbridge import topics
from qbridge.contracts.registry import pending_changes, register


def main(argv: list[str] | None = None) -> int:
    """CLI: ``check`` (exit 1 on unregistered changes) or ``register``."""
    parser = argparse.ArgumentParser(prog="python -m qbridge.contracts")
    parser.add_argument("command", choices=["check", "register"])
    args = parser.parse_args(argv)
    if args.command == "check":
        changed = pending_changes()
        if changed:
            print(
                "schema sources changed without registration: "
                + ", ".join(changed)
                + "\nrun: make schemas",
                file=sys.stderr,
            )
            return 1
        print(f"schema registry up to date ({len(topics.subjects())} subjects)")
        return 0
    for subject, version, schema_id in register():
        print(f"registered {subject} v{version} as id {schema_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
