"""A minimal Python client of the qbridge gateway: Solve with a deadline, then Submit + Watch.

Usage::

    QBRIDGE_TARGET=127.0.0.1:50051 QBRIDGE_API_KEY=demo-key python examples/client.py
"""

from __future__ import annotations

import os

import grpc

from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc


def main() -> None:
    """Solve a small MaxCut within 1 s, then submit it as a job and watch it."""
    channel = grpc.insecure_channel(os.environ.get("QBRIDGE_TARGET", "127.0.0.1:50051"))
    stub = pb_grpc.GatewayStub(channel)
    metadata = (("authorization", f"Bearer {os.environ.get('QBRIDGE_API_KEY', 'demo-key')}"),)
    problem = pb.Problem(
        maxcut=pb.MaxCut(
            num_nodes=4,
            edges=[
                pb.WeightedEdge(u=0, v=1, weight=1.0),
                pb.WeightedEdge(u=1, v=2, weight=2.0),
                pb.WeightedEdge(u=2, v=3, weight=1.5),
                pb.WeightedEdge(u=3, v=0, weight=0.5),
            ],
        )
    )
    # The gRPC deadline is the answer budget (deadline propagation); deadline_ms may also be set.
    answer = stub.Solve(pb.SolveRequest(problem=problem), metadata=metadata, timeout=1.0)
    print(
        f"{pb.AnswerSource.Name(answer.source)} {pb.Route.Name(answer.result.route)}: "
        f"cut {answer.result.solution.objective} {list(answer.result.solution.assignment)} "
        f"in {answer.elapsed_ms:.0f} ms ({answer.result.reason})"
    )
    job = stub.Submit(pb.SubmitRequest(problem=problem), metadata=metadata, timeout=10)
    for update in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=metadata):
        t = update.transition
        print(f"  {t.seq}: {pb.JobStatus.Name(t.to_status)} {t.reason}")
        if update.final:
            route = pb.Route.Name(update.result.route)
            print(f"  result: {update.result.solution.objective} via {route}")


if __name__ == "__main__":
    main()
