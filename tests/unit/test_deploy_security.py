"""Kubernetes lock-down: Kafka users and ACLs match the code, TLS for the gateway, no
anonymous Kafka listener, KEDA authenticates, the prod dashboard is off."""

from __future__ import annotations

from typing import Any

import pytest

from qbridge.bus.acls import SERVICE_ACCESS, grants
from tests.unit.test_deploy import OVERLAYS, config, container, objects, one, workload

TARGETS = [f"overlays/{o}" for o in OVERLAYS]


@pytest.mark.parametrize("target", TARGETS)
def test_kafka_users_grant_exactly_what_the_code_grants(target: str) -> None:
    users = {u["metadata"]["name"]: u for u in objects(target, "KafkaUser")}
    assert set(users) == {a.principal for a in SERVICE_ACCESS.values()}
    for access in SERVICE_ACCESS.values():
        spec = users[access.principal]["spec"]
        assert spec["authentication"] == {"type": "scram-sha-512"}
        declared = {
            (acl["resource"]["type"], acl["resource"]["patternType"], acl["resource"]["name"], op)
            for acl in spec["authorization"]["acls"]
            for op in acl["operations"]
        }
        assert declared == set(grants(access)), access.principal


@pytest.mark.parametrize("target", TARGETS)
def test_every_kafka_listener_authenticates_and_acls_are_enforced(target: str) -> None:
    kafka = objects(target, "Kafka")[0]["spec"]["kafka"]
    assert kafka["authorization"]["type"] == "simple"
    for listener in kafka["listeners"]:
        assert listener["authentication"] == {"type": "scram-sha-512"}, listener["name"]
        assert listener["networkPolicyPeers"], listener["name"]
    cfg = config(target)
    assert cfg["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert cfg["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("target", TARGETS)
def test_each_workload_uses_its_own_kafka_user(target: str) -> None:
    cfg = config(target)
    for service, access in SERVICE_ACCESS.items():
        c = container(target, service)
        env = {e["name"]: e for e in c.get("env", [])}
        assert env["KAFKA_SASL_USERNAME"]["value"] == access.principal
        pod = workload(target, service)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kafka-user"]["secret"]["secretName"] == access.principal
        mount = next(m for m in c["volumeMounts"] if m["name"] == "kafka-user")
        assert cfg["KAFKA_SASL_PASSWORD_FILE"].startswith(mount["mountPath"] + "/")


@pytest.mark.parametrize("target", TARGETS)
def test_keda_reads_lag_with_the_service_credentials(target: str) -> None:
    auths = {a["metadata"]["name"]: a["spec"] for a in objects(target, "TriggerAuthentication")}
    for scaled in objects(target, "ScaledObject"):
        name = scaled["metadata"]["name"]
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["metadata"]["sasl"] == "scram_sha512"
            auth = auths[trigger["authenticationRef"]["name"]]
            [secret] = auth["secretTargetRef"]
            assert (secret["parameter"], secret["name"]) == ("password", f"qbridge-{name}")
            [user] = auth["env"]
            assert (user["parameter"], user["name"]) == ("username", "KAFKA_SASL_USERNAME")


@pytest.mark.parametrize("target", TARGETS)
def test_gateway_serves_tls_from_a_cert_manager_certificate(target: str) -> None:
    cert = one(target, "Certificate", "gateway")["spec"]
    assert "gateway" in cert["dnsNames"]
    c = container(target, "gateway")
    env = {e["name"]: e.get("value") for e in c["env"]}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
    assert env["QBRIDGE_TLS_CERT"] == f"{mount['mountPath']}/tls.crt"
    assert env["QBRIDGE_TLS_KEY"] == f"{mount['mountPath']}/tls.key"
    assert "QBRIDGE_GRPC_ALLOW_PLAINTEXT" not in env and "QBRIDGE_GRPC_ALLOW_PLAINTEXT" not in (
        config(target)
    )
    pod = workload(target, "gateway")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == cert["secretName"]
    namespace = one(target, "Namespace", objects(target, "Namespace")[0]["metadata"]["name"])
    assert f"gateway.{namespace['metadata']['name']}.svc" in cert["dnsNames"]


def test_prod_dashboard_is_off() -> None:
    assert config("overlays/prod")["QBRIDGE_DASHBOARD_ENABLED"] == "false"


@pytest.mark.parametrize("target", TARGETS)
def test_metrics_port_admits_only_the_monitoring_namespace(target: str) -> None:
    policy = one(target, "NetworkPolicy", "qbridge-services-ingress")["spec"]
    [rule] = policy["ingress"]
    assert rule["from"], "metrics/dashboard port open to every source"


# ------------------------------------------------------------------ docker-compose


def test_compose_kafka_authenticates_every_listener_and_enforces_acls() -> None:
    from tests.unit.test_deploy import compose_config

    env = compose_config()["services"]["kafka"]["environment"]
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, protocols
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    assert listeners == set(protocols)
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    # Each listener has a login module for every mechanism it enables.
    for name in listeners:
        mechanisms = env.get(
            f"KAFKA_LISTENER_NAME_{name}_SASL_ENABLED_MECHANISMS",
            env["KAFKA_SASL_ENABLED_MECHANISMS"],
        ).split(",")
        for mechanism in mechanisms:
            key = mechanism.replace("-", "___")
            assert f"KAFKA_LISTENER_NAME_{name}_{key}_SASL_JAAS_CONFIG" in env, (name, mechanism)


def test_compose_services_use_their_own_credentials() -> None:
    from ops.db_init import SERVICE_DB_ROLES, login_name
    from tests.unit.test_deploy import compose_config

    services = compose_config()["services"]
    passwords = set()
    for service, access in SERVICE_ACCESS.items():
        env = services[service]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["KAFKA_SASL_USERNAME"] == access.principal
        passwords.add(env["KAFKA_SASL_PASSWORD"])
        if service in SERVICE_DB_ROLES:
            assert env["DATABASE_URL"].startswith(f"postgresql://{login_name(service)}:"), service
    assert len(passwords) == len(SERVICE_ACCESS), "one password per service"
    # The users are made by the one-shot job from the same passwords.
    users = services["kafka-users"]["environment"]
    for service in SERVICE_ACCESS:
        key = f"QBRIDGE_KAFKA_PASSWORD_{service.upper().replace('-', '_')}"
        assert users[key] == services[service]["environment"]["KAFKA_SASL_PASSWORD"]


def test_compose_gateway_serves_tls_and_the_dashboard_is_off() -> None:
    from tests.unit.test_deploy import compose_config

    services = compose_config()["services"]
    gateway = services["gateway"]
    env = gateway["environment"]
    mounts = {
        str(v).split(":")[1] if isinstance(v, str) else v["target"] for v in gateway["volumes"]
    }
    assert {env["QBRIDGE_TLS_CERT"], env["QBRIDGE_TLS_KEY"]} <= mounts
    assert "QBRIDGE_GRPC_ALLOW_PLAINTEXT" not in env
    assert "QBRIDGE_GRPC_REFLECTION" not in env
    assert services["results-sink"]["environment"]["QBRIDGE_DASHBOARD_ENABLED"] == "false"


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_logs_in_to_postgres_as_itself_and_only_db_init_sees_the_owner(
    target: str,
) -> None:
    from ops.db_init import SCHEMA_LOGINS, SERVICE_DB_ROLES, url_env

    def secret_keys(c: dict[str, Any]) -> dict[str, str]:
        return {
            e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }

    for service in SERVICE_DB_ROLES:
        keys = secret_keys(container(target, service))
        assert keys["DATABASE_URL"] == f"DATABASE_URL_{service.upper().replace('-', '_')}"
        assert "DATABASE_URL_OWNER" not in keys.values(), service
    for schema, logins in SCHEMA_LOGINS.items():
        pod = workload(target, schema)["spec"]["template"]["spec"]
        [init] = pod["initContainers"]
        assert init["command"] == ["python", "-m", "ops.db_init", schema]
        assert init["image"].split(":")[0] == f"qbridge/{schema}"
        keys = secret_keys(init)
        assert keys.pop("DATABASE_URL") == "DATABASE_URL_OWNER"
        # The logins it creates get the very passwords their services connect with.
        assert keys == {
            url_env(s): secret_keys(container(target, s))["DATABASE_URL"] for s in logins
        }
        sc = init["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]


def test_dev_postgres_admits_only_the_services_that_use_it() -> None:
    from ops.db_init import SERVICE_DB_ROLES

    policy = one("overlays/dev", "NetworkPolicy", "postgres-ingress")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "postgres"}
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    [expr] = peer["podSelector"]["matchExpressions"]
    assert (expr["key"], expr["operator"]) == ("app.kubernetes.io/name", "In")
    assert set(expr["values"]) == set(SERVICE_DB_ROLES)
    assert [p["port"] for p in rule["ports"]] == [5432]
