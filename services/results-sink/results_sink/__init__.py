"""results-sink: stores jobs, attempts, transitions, solutions and costs in PostgreSQL."""

SERVICE_NAME = "results-sink"
