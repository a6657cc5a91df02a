"""gateway: the gRPC front door (deadline-bounded Solve, async jobs, health, auth)."""
