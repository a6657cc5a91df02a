"""`python -m quantum_executor`: the shared executor app with the quantum solvers."""

from __future__ import annotations

import sys

from qbridge.executor.app import ProgressPublisher, serve_executor
from qbridge.solvers.quantum.checkpoint import PostgresCheckpointStore
from qbridge.topics import WORK_QUANTUM
from quantum_executor.config import QuantumSettings
from quantum_executor.solvers import QuantumSolvers

SERVICE = "quantum-executor"


def main() -> int:
    """Run the quantum executor; returns the exit code."""
    settings = QuantumSettings()
    progress = (
        ProgressPublisher.create(settings.kafka, SERVICE, settings.progress_spec())
        if settings.progress_enabled
        else None
    )
    solvers = QuantumSolvers(
        settings.backends,
        settings.qaoa(),
        backend_options=settings.backend_options,
        faults=settings.faults(),
        checkpoints=(
            PostgresCheckpointStore(settings.checkpoint_dsn) if settings.checkpoint_dsn else None
        ),
        progress=progress,
        progress_settings=settings.progress(),
        template_max_qubits=settings.batch_template_max_qubits,
    )
    return serve_executor(
        SERVICE,
        settings,
        settings,
        WORK_QUANTUM,
        solvers,
        settings.worker(),
        prewarm=[b for b in settings.prewarm_backends if b in settings.backends],
        progress=progress,
        group_max=settings.group_max(),
    )


if __name__ == "__main__":
    sys.exit(main())
