"""The orchestrator: per-job state machine, routing policy, retries, deadlines, fallback."""
