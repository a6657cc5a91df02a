"""Container healthcheck: ``python -m ops.healthcheck [http PATH | grpc]``.

* ``http /healthz`` (default): GET ``http://127.0.0.1:$QBRIDGE_HTTP_PORT/healthz``.
* ``grpc``: the standard ``grpc.health.v1.Health/Check`` on ``127.0.0.1:$QBRIDGE_GRPC_PORT``
  (the gateway), SERVING required.

Exit 0 when healthy, 1 otherwise (Docker's ``HEALTHCHECK`` contract). Standard library
plus grpcio only, so it starts fast.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def check_http(path: str, port: int, timeout: float = 2.0) -> bool:
    """True if ``GET path`` answers 2xx."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


def check_grpc(port: int, service: str = "", timeout: float = 2.0) -> bool:
    """True if the plaintext gRPC health service says SERVING.

    Like Kubernetes' own gRPC probes this speaks plaintext: with TLS on the gateway
    port, terminate TLS in front of it (ingress, mesh) or probe another way.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False
    finally:
        channel.close()


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 (healthy) or 1."""
    args = list(sys.argv[1:] if argv is None else argv) or ["http", "/healthz"]
    if args[0] == "grpc":
        ok = check_grpc(int(os.environ.get("QBRIDGE_GRPC_PORT", "50051")))
    else:
        path = args[1] if len(args) > 1 else "/healthz"
        ok = check_http(path, int(os.environ.get("QBRIDGE_HTTP_PORT", "9100")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
