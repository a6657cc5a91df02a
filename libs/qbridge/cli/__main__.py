"""``python -m qbridge.cli``."""

from __future__ import annotations

import sys

from qbridge.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
