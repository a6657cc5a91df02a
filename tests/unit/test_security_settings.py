"""Secure-by-default settings: gRPC TLS refusal, Kafka SASL passwords, least-privilege ACLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from qbridge.bus import KafkaSettings
from qbridge.bus.acls import SERVICE_ACCESS, grants
from qbridge.bus.admin import acl_bindings
from qbridge.errors import ConfigurationError
from qbridge.service.grpc_server import GrpcServerSettings, require_transport_security
from qbridge.topics import (
    ALL_GROUPS,
    DEAD_LETTERS,
    JOB_OUTCOMES,
    JOB_STATUS,
    PROBLEM_REQUESTS,
    SOLVER_OUTCOMES,
)


def test_api_keys_without_tls_are_refused_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QBRIDGE_GRPC_ALLOW_PLAINTEXT", raising=False)
    with pytest.raises(ConfigurationError, match="QBRIDGE_GRPC_ALLOW_PLAINTEXT"):
        require_transport_security(GrpcServerSettings(), authenticated=True)


def test_plaintext_is_served_only_when_opted_into(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBRIDGE_GRPC_ALLOW_PLAINTEXT", "true")
    settings = GrpcServerSettings()
    assert settings.grpc_allow_plaintext is True
    require_transport_security(settings, authenticated=True)  # no error


def test_tls_or_no_secrets_needs_no_opt_in(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    tls = GrpcServerSettings(tls_cert=str(cert), tls_key=str(key))
    require_transport_security(tls, authenticated=True)
    require_transport_security(GrpcServerSettings(), authenticated=False)


def test_sasl_password_comes_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="qbridge-gateway",
        sasl_password_file=secret,
    )
    cfg = settings.client_config()
    assert cfg["sasl.password"] == "s3cret" and cfg["sasl.username"] == "qbridge-gateway"
    assert "s3cret" not in repr(settings)
    # An explicit password wins over the file.
    assert KafkaSettings(sasl_password="x", sasl_password_file=secret).password() == "x"


def test_unreadable_password_file_is_a_configuration_error(tmp_path: Path) -> None:
    settings = KafkaSettings(sasl_password_file=tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="KAFKA_SASL_PASSWORD_FILE"):
        settings.client_config()


def _ops(service: str, resource: str, name: str) -> set[str]:
    return {op for r, _p, n, op in grants(SERVICE_ACCESS[service]) if (r, n) == (resource, name)}


def test_gateway_may_submit_but_never_forge_results() -> None:
    assert _ops("gateway", "topic", PROBLEM_REQUESTS.name) == {"Write"}
    for forged in (JOB_OUTCOMES, JOB_STATUS, SOLVER_OUTCOMES, DEAD_LETTERS):
        assert "Write" not in _ops("gateway", "topic", forged.name), forged.name


def test_each_group_is_joined_by_exactly_its_service() -> None:
    for group in ALL_GROUPS:
        joiners = [s for s in SERVICE_ACCESS if "Read" in _ops(s, "group", group.name)]
        assert len(joiners) == 1, (group.name, joiners)
        for topic in group.topics:
            assert "Read" in _ops(joiners[0], "topic", topic)


def test_only_the_orchestrator_writes_transitions_and_outcomes() -> None:
    for spec in (JOB_STATUS, JOB_OUTCOMES):
        writers = [s for s in SERVICE_ACCESS if "Write" in _ops(s, "topic", spec.name)]
        assert writers == ["orchestrator"], spec.name


def test_acl_bindings_name_the_service_principal() -> None:
    bindings = acl_bindings(SERVICE_ACCESS["intake"])
    assert {b.principal for b in bindings} == {"User:qbridge-intake"}
    assert len(bindings) == len(grants(SERVICE_ACCESS["intake"]))
