"""`python -m classical_fallback`: the shared executor app with the classical portfolio."""

from __future__ import annotations

import sys

from classical_fallback.config import ClassicalSettings
from classical_fallback.solvers import ClassicalSolvers
from qbridge.executor.app import serve_executor
from qbridge.topics import WORK_CLASSICAL

SERVICE = "classical-fallback"


def main() -> int:
    """Run the classical fallback; returns the exit code."""
    settings = ClassicalSettings()
    solvers = ClassicalSolvers(settings.backends, settings.cpsat())
    return serve_executor(SERVICE, settings, settings, WORK_CLASSICAL, solvers, settings.worker())


if __name__ == "__main__":
    sys.exit(main())
