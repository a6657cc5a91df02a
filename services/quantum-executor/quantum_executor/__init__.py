"""quantum-executor: runs quantum work items with QAOA on the configured Qiskit backends."""
