"""The dev CA script: its gateway certificate serves gRPC TLS that its CA verifies."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ops.devcerts import FILES, generate, main
from qbridge.service.grpc_server import server_credentials


def _serve(cert: Path, key: Path) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    creds = server_credentials(str(cert), str(key))
    assert creds is not None
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


def test_gateway_certificate_verifies_against_the_dev_ca(tmp_path: Path) -> None:
    files = generate(tmp_path / "tls")
    server, port = _serve(files["gateway.crt"], files["gateway.key"])
    try:
        trusted = grpc.ssl_channel_credentials(files["ca.crt"].read_bytes())
        with grpc.secure_channel(f"localhost:{port}", trusted) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # Another CA (a fresh run) is not trusted: the handshake fails.
        other = generate(tmp_path / "other")
        untrusted = grpc.ssl_channel_credentials(other["ca.crt"].read_bytes())
        with (
            grpc.secure_channel(f"localhost:{port}", untrusted) as channel,
            pytest.raises(grpc.RpcError) as err,
        ):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_rerun_keeps_existing_files_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    assert main(["--out", str(out)]) == 0
    before = {f: (out / f).read_bytes() for f in FILES}
    assert main(["--out", str(out)]) == 0
    assert {f: (out / f).read_bytes() for f in FILES} == before
    assert main(["--out", str(out), "--force"]) == 0
    assert (out / "ca.crt").read_bytes() != before["ca.crt"]
    assert (out / "ca.key").stat().st_mode & 0o077 == 0
