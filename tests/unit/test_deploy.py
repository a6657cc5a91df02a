"""Deployment artifacts: Kubernetes manifests, docker-compose, Dockerfiles.

* Every overlay is rendered with kustomize (``kubectl kustomize``; see ``ops.tooling``)
  and every resulting object is validated: core Kubernetes kinds against the official
  OpenAPI schemas bundled by ``kubernetes-validate`` (strict: unknown fields fail), the
  KEDA and Strimzi custom resources against the minimal structural schemas below
  (written from the upstream CRDs for the fields we use; unknown fields fail too).
* Names and numbers that must agree with the code are compared with it, not with a
  copy: topics, partitions, retention and consumer groups with ``qbridge.topics``;
  ports, group ids, database use and thresholds with the services' settings classes;
  start commands with ``devstack.pipeline.SERVICES``.
* ``docker-compose.yml`` is parsed by a real compose implementation (Debian's
  ``docker-compose config``, no Docker engine needed) and validated against the
  compose-spec JSON schema (vendored by ``check-jsonschema``).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from classical_fallback.config import ClassicalSettings
from devstack.kafka import KAFKA_VERSION
from devstack.pipeline import SERVICES
from gateway.config import GatewaySettings
from intake.config import IntakeSettings
from ops.tooling import ensure, kustomize_command
from orchestrator.config import OrchestratorSettings
from qbridge import topics
from qbridge.bus.consumer import _CONSUMER_DEFAULTS
from qbridge.dashboard import DashboardSettings
from quantum_executor.config import QuantumSettings
from results_sink.config import ResultsSinkSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest supported (preStop sleep action) and newest

#: Every service: settings class (None: none importable) and its consumer group.
CONSUMERS: dict[str, tuple[type[Any], topics.ConsumerGroup]] = {
    "intake": (IntakeSettings, topics.INTAKE_GROUP),
    "orchestrator": (OrchestratorSettings, topics.ORCHESTRATOR_GROUP),
    "quantum-executor": (QuantumSettings, topics.QUANTUM_EXECUTOR_GROUP),
    "classical-fallback": (ClassicalSettings, topics.CLASSICAL_FALLBACK_GROUP),
    "results-sink": (ResultsSinkSettings, topics.RESULTS_SINK_GROUP),
}
SETTINGS: dict[str, type[Any]] = {
    **{name: cls for name, (cls, _) in CONSUMERS.items()},
    "gateway": GatewaySettings,
}
APP_SERVICES = tuple(SETTINGS)
MODULES = {**dict(SERVICES), "gateway": "gateway"}
HTTP_PORT = 9100

# ----------------------------------------------------------------------------------------
# Minimal structural schemas of the custom resources (KEDA 2.x, Strimzi v1beta2).

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object"}
_QTY = {"type": ["string", "integer"]}


def _strict(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": False,
    }


_META = _strict({"name": _STR, "namespace": _STR, "labels": _OBJ, "annotations": _OBJ}, ("name",))
_RESOURCES = _strict({"requests": _OBJ, "limits": _OBJ})
_HPA_RULES = _strict(
    {"stabilizationWindowSeconds": _INT, "selectPolicy": _STR, "policies": {"type": "array"}}
)
_KAFKA_TRIGGER_KEYS = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
    "excludePersistentLag", "limitToPartitionsWithLag", "partitionLimitation", "sasl", "tls",
    "version", "unsafeSsl",
}  # fmt: skip

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _strict(
        {
            "apiVersion": _STR,
            "kind": _STR,
            "metadata": _META,
            "spec": _strict(
                {
                    "scaleTargetRef": _strict(
                        {
                            "apiVersion": _STR,
                            "kind": _STR,
                            "name": _STR,
                            "envSourceContainerName": _STR,
                        },
                        ("name",),
                    ),
                    "pollingInterval": _INT,
                    "cooldownPeriod": _INT,
                    "initialCooldownPeriod": _INT,
                    "idleReplicaCount": _INT,
                    "minReplicaCount": _INT,
                    "maxReplicaCount": _INT,
                    "fallback": _strict({"failureThreshold": _INT, "replicas": _INT}),
                    "advanced": _strict(
                        {
                            "restoreToOriginalReplicaCount": _BOOL,
                            "horizontalPodAutoscalerConfig": _strict(
                                {
                                    "name": _STR,
                                    "behavior": _strict(
                                        {"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES}
                                    ),
                                }
                            ),
                            "scalingModifiers": _OBJ,
                        }
                    ),
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": _strict(
                            {
                                "type": {"enum": ["kafka"]},
                                "name": _STR,
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": _STR,
                                    "propertyNames": {"enum": sorted(_KAFKA_TRIGGER_KEYS)},
                                    "required": ["bootstrapServers", "consumerGroup"],
                                },
                                "authenticationRef": _strict({"name": _STR, "kind": _STR}),
                                "metricType": {"enum": ["AverageValue", "Value"]},
                                "useCachedMetrics": _BOOL,
                            },
                            ("type", "metadata"),
                        ),
                    },
                },
                ("scaleTargetRef", "triggers"),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    ("kafka.strimzi.io/v1beta2", "Kafka"): _strict(
        {
            "apiVersion": _STR,
            "kind": _STR,
            "metadata": _META,
            "spec": _strict(
                {
                    "kafka": _strict(
                        {
                            "version": _STR,
                            "metadataVersion": _STR,
                            "replicas": _INT,
                            "listeners": {
                                "type": "array",
                                "minItems": 1,
                                "items": _strict(
                                    {
                                        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
                                        "port": {"type": "integer", "minimum": 9092},
                                        "type": {
                                            "enum": [
                                                "internal",
                                                "route",
                                                "loadbalancer",
                                                "nodeport",
                                                "ingress",
                                                "cluster-ip",
                                            ]
                                        },
                                        "tls": _BOOL,
                                        "authentication": _OBJ,
                                        "configuration": _OBJ,
                                        "networkPolicyPeers": {"type": "array"},
                                    },
                                    ("name", "port", "type", "tls"),
                                ),
                            },
                            "config": _OBJ,
                            "authorization": _OBJ,
                            "resources": _RESOURCES,
                            "jvmOptions": _OBJ,
                            "metricsConfig": _OBJ,
                            "template": _OBJ,
                            "rack": _OBJ,
                        },
                        ("listeners",),
                    ),
                    "entityOperator": _strict({"topicOperator": _OBJ, "userOperator": _OBJ}),
                    "cruiseControl": _OBJ,
                    "kafkaExporter": _OBJ,
                },
                ("kafka",),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): _strict(
        {
            "apiVersion": _STR,
            "kind": _STR,
            "metadata": _META,
            "spec": _strict(
                {
                    "replicas": {"type": "integer", "minimum": 0},
                    "roles": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": ["controller", "broker"]},
                    },
                    "storage": {
                        "type": "object",
                        "properties": {
                            "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                            "volumes": {
                                "type": "array",
                                "items": _strict(
                                    {
                                        "id": _INT,
                                        "type": {"enum": ["ephemeral", "persistent-claim"]},
                                        "size": _STR,
                                        "sizeLimit": _STR,
                                        "class": _STR,
                                        "deleteClaim": _BOOL,
                                        "kraftMetadata": {"enum": ["shared"]},
                                    },
                                    ("type",),
                                ),
                            },
                            "size": _STR,
                            "sizeLimit": _STR,
                            "deleteClaim": _BOOL,
                            "kraftMetadata": {"enum": ["shared"]},
                        },
                        "required": ["type"],
                        "additionalProperties": False,
                    },
                    "resources": _RESOURCES,
                    "jvmOptions": _OBJ,
                    "template": _OBJ,
                },
                ("replicas", "roles", "storage"),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): _strict(
        {
            "apiVersion": _STR,
            "kind": _STR,
            "metadata": _META,
            "spec": _strict(
                {
                    "topicName": _STR,
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {"type": "object", "additionalProperties": _QTY | {}},
                },
                ("partitions", "replicas"),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
}
_ACL_OPS = {"enum": ["Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
                     "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"]}  # fmt: skip
_ISSUER_REF = _strict(
    {"name": _STR, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": _STR}, ("name",)
)
_KEY = _strict(
    {
        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
        "size": _INT,
        "encoding": {"enum": ["PKCS1", "PKCS8"]},
        "rotationPolicy": {"enum": ["Never", "Always"]},
    }
)


def _cr(spec: dict[str, Any]) -> dict[str, Any]:
    """A custom resource with the given ``spec`` schema."""
    return _strict(
        {"apiVersion": _STR, "kind": _STR, "metadata": _META, "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


CRD_SCHEMAS.update(
    {
        ("kafka.strimzi.io/v1beta2", "KafkaUser"): _cr(
            _strict(
                {
                    "authentication": _strict(
                        {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}},
                        ("type",),
                    ),
                    "authorization": _strict(
                        {
                            "type": {"enum": ["simple"]},
                            "acls": {
                                "type": "array",
                                "items": _strict(
                                    {
                                        "resource": _strict(
                                            {
                                                "type": {
                                                    "enum": [
                                                        "topic",
                                                        "group",
                                                        "cluster",
                                                        "transactionalId",
                                                    ]
                                                },
                                                "name": _STR,
                                                "patternType": {"enum": ["literal", "prefix"]},
                                            },
                                            ("type",),
                                        ),
                                        "type": {"enum": ["allow", "deny"]},
                                        "host": _STR,
                                        "operations": {
                                            "type": "array",
                                            "minItems": 1,
                                            "items": _ACL_OPS,
                                        },
                                    },
                                    ("resource", "operations"),
                                ),
                            },
                        },
                        ("type",),
                    ),
                    "quotas": _OBJ,
                    "template": _OBJ,
                }
            )
        ),
        ("keda.sh/v1alpha1", "TriggerAuthentication"): _cr(
            _strict(
                {
                    "secretTargetRef": {
                        "type": "array",
                        "items": _strict(
                            {"parameter": _STR, "name": _STR, "key": _STR},
                            ("parameter", "name", "key"),
                        ),
                    },
                    "env": {
                        "type": "array",
                        "items": _strict(
                            {"parameter": _STR, "name": _STR, "containerName": _STR},
                            ("parameter", "name"),
                        ),
                    },
                    "podIdentity": _OBJ,
                    "hashiCorpVault": _OBJ,
                }
            )
        ),
        ("cert-manager.io/v1", "Issuer"): _cr(
            {
                "type": "object",
                "properties": {
                    "selfSigned": _strict({"crlDistributionPoints": {"type": "array"}}),
                    "ca": _strict({"secretName": _STR}, ("secretName",)),
                    "acme": _OBJ,
                    "vault": _OBJ,
                },
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
            }
        ),
        ("cert-manager.io/v1", "Certificate"): _cr(
            _strict(
                {
                    "secretName": _STR,
                    "issuerRef": _ISSUER_REF,
                    "isCA": _BOOL,
                    "commonName": _STR,
                    "dnsNames": {"type": "array", "items": _STR},
                    "ipAddresses": {"type": "array", "items": _STR},
                    "duration": _STR,
                    "renewBefore": _STR,
                    "usages": {"type": "array", "items": _STR},
                    "privateKey": _KEY,
                    "secretTemplate": _OBJ,
                },
                ("secretName", "issuerRef"),
            )
        ),
    }
)
CRD_SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaTopic")]["properties"]["spec"]["properties"][
    "config"
]["additionalProperties"] = {"type": ["string", "integer", "boolean"]}


# ----------------------------------------------------------------------------------------
# Rendering helpers.


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    """kustomize build of ``deploy/k8s/<target>`` as a tuple of objects."""
    proc = subprocess.run(
        [*kustomize_command(), str(K8S / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def objects(target: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in render(target) if d["kind"] == kind]


def one(target: str, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in objects(target, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{target}: {kind}/{name} x{len(found)}"
    return found[0]


def config(target: str) -> dict[str, str]:
    maps = [
        d
        for d in objects(target, "ConfigMap")
        if d["metadata"]["name"].startswith("qbridge-config")
    ]
    assert len(maps) == 1
    return dict(maps[0]["data"])


def workload(target: str, name: str) -> dict[str, Any]:
    kind = "Deployment" if name == "gateway" else "StatefulSet"
    return one(target, kind, name)


def container(target: str, name: str) -> dict[str, Any]:
    pod = workload(target, name)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    c: dict[str, Any] = pod["containers"][0]
    assert c["name"] == name
    return c


def all_targets() -> Iterator[str]:
    yield "base"
    for o in OVERLAYS:
        yield f"overlays/{o}"


# ----------------------------------------------------------------------------------------
# Schema validation.


@pytest.mark.parametrize("target", list(all_targets()))
def test_every_rendered_object_is_valid(target: str) -> None:
    docs = render(target)
    assert len(docs) > 30
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd is not None:
            jsonschema.validate(doc, crd)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    assert {"StatefulSet", "Deployment", "ScaledObject", "Kafka", "KafkaNodePool",
            "KafkaTopic", "ConfigMap", "Service", "HorizontalPodAutoscaler"} <= kinds  # fmt: skip


def test_validators_reject_mistakes() -> None:
    sts = copy.deepcopy(workload("overlays/prod", "intake"))
    sts["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSIONS[-1], strict=True)
    so = copy.deepcopy(one("overlays/prod", "ScaledObject", "intake"))
    so["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "5"  # typo
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(so, CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")])
    topic = copy.deepcopy(objects("overlays/prod", "KafkaTopic")[0])
    topic["spec"]["partition"] = 6
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(topic, CRD_SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaTopic")])


def test_every_manifest_file_is_part_of_a_kustomization() -> None:
    used: set[Path] = set()
    for kfile in K8S.rglob("kustomization.yaml"):
        k = yaml.safe_load(kfile.read_text())
        for res in k.get("resources", []):
            path = (kfile.parent / res).resolve()
            used.add(path / "kustomization.yaml" if path.is_dir() else path)
        used.add(kfile.resolve())
    files = {p.resolve() for p in K8S.rglob("*.yaml")}
    assert files == used, f"not referenced: {sorted(map(str, files - used))}"


# ----------------------------------------------------------------------------------------
# Drift: Kafka topics and consumer groups.


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_match_the_code(overlay: str) -> None:
    target = f"overlays/{overlay}"
    cfg = config(target)
    kafka = objects(target, "Kafka")
    assert len(kafka) == 1
    cluster = kafka[0]["metadata"]["name"]
    declared = {t["spec"]["topicName"]: t for t in objects(target, "KafkaTopic")}
    assert set(declared) == {t.name for t in topics.ALL_TOPICS}
    for spec in topics.ALL_TOPICS:
        t = declared[spec.name]
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert t["spec"]["partitions"] == spec.partitions, spec.name
        assert int(t["spec"]["config"]["retention.ms"]) == spec.retention_ms, spec.name
        assert t["spec"]["replicas"] == int(cfg["KAFKA_REPLICATION_FACTOR"]), spec.name
        assert t["spec"]["config"]["min.insync.replicas"] == cfg["KAFKA_MIN_INSYNC_REPLICAS"]
        assert t["spec"]["config"]["unclean.leader.election.enable"] == "false"
    broker_cfg = kafka[0]["spec"]["kafka"]["config"]
    assert broker_cfg["default.replication.factor"] == int(cfg["KAFKA_REPLICATION_FACTOR"])
    assert broker_cfg["min.insync.replicas"] == int(cfg["KAFKA_MIN_INSYNC_REPLICAS"])
    assert broker_cfg["auto.create.topics.enable"] is False
    assert cfg["QBRIDGE_CREATE_TOPICS"] == "false"
    pools = objects(target, "KafkaNodePool")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    assert any("controller" in p["spec"]["roles"] for p in pools), "KRaft needs controllers"
    assert brokers >= int(cfg["KAFKA_REPLICATION_FACTOR"])
    if overlay == "prod":
        assert int(cfg["KAFKA_REPLICATION_FACTOR"]) >= 3
        assert int(cfg["KAFKA_MIN_INSYNC_REPLICAS"]) >= 2


def test_kafka_version_is_the_one_the_local_stack_runs() -> None:
    version = KAFKA_VERSION  # devstack checks it against tools/kafka/pom.xml
    for o in OVERLAYS:
        kafka = objects(f"overlays/{o}", "Kafka")[0]["spec"]["kafka"]
        assert kafka["version"] == version
        assert kafka["metadataVersion"].startswith(".".join(version.split(".")[:2]) + "-IV")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["kafka"]["image"]
    assert image == f"${{QBRIDGE_KAFKA_IMAGE:-apache/kafka:{version}}}"
    assert ENV_EXAMPLE["QBRIDGE_KAFKA_IMAGE"] == f"apache/kafka:{version}"


def test_service_settings_use_the_groups_of_topics_py() -> None:
    for name, (cls, group) in CONSUMERS.items():
        default = getattr(cls(), "consumer_group", group.name)  # orchestrator: constant
        assert default == group.name, name
    assert {g.name for _, g in CONSUMERS.values()} == {g.name for g in topics.ALL_GROUPS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_consumer_scales_on_its_own_group_lag(overlay: str) -> None:
    target = f"overlays/{overlay}"
    cfg = config(target)
    cluster = objects(target, "Kafka")[0]
    scram = next(
        li
        for li in cluster["spec"]["kafka"]["listeners"]
        if li["name"] == "scram" and not li["tls"]
    )
    assert scram["authentication"] == {"type": "scram-sha-512"}
    bootstrap = f"{cluster['metadata']['name']}-kafka-bootstrap:{scram['port']}"
    assert cfg["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
    scaled = {s["metadata"]["name"]: s for s in objects(target, "ScaledObject")}
    assert set(scaled) == set(CONSUMERS)
    for name, (_, group) in CONSUMERS.items():
        spec = scaled[name]["spec"]
        ref = spec["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "StatefulSet", name)
        triggers = [t["metadata"] for t in spec["triggers"]]
        assert {t["consumerGroup"] for t in triggers} == {group.name}
        assert sorted(t["topic"] for t in triggers) == sorted(group.topics), name
        partitions = min(topics.topic(t).partitions for t in group.topics)
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions, name
        for t in triggers:
            assert t["bootstrapServers"] == bootstrap
            assert int(t["lagThreshold"]) >= 1
            assert t["offsetResetPolicy"] == _CONSUMER_DEFAULTS["auto.offset.reset"]
            assert t["allowIdleConsumers"] == "false"
        assert "replicas" not in workload(target, name)["spec"], "KEDA owns the replica count"


def _scale_out_lag(target: str, name: str) -> int:
    """Lag at which KEDA asks for the maximum replicas of ``name``."""
    spec = one(target, "ScaledObject", name)["spec"]
    threshold = max(int(t["metadata"]["lagThreshold"]) for t in spec["triggers"])
    return threshold * int(spec["maxReplicaCount"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_out_before_the_orchestrator_degrades(overlay: str) -> None:
    target = f"overlays/{overlay}"
    cfg = config(target)
    orch = OrchestratorSettings()
    dash = DashboardSettings()
    degrade, pause = (
        int(cfg["QBRIDGE_DEGRADE_QUANTUM_LAG"]),
        int(cfg["QBRIDGE_PAUSE_LOW_PRIORITY_LAG"]),
    )
    # The ConfigMap states the code's defaults explicitly (and the dashboard draws the same).
    assert (degrade, pause) == (orch.degrade_quantum_lag, orch.pause_low_priority_lag)
    assert (degrade, pause) == (dash.degrade_quantum_lag, dash.pause_low_priority_lag)
    quantum = _scale_out_lag(target, "quantum-executor")
    classical = _scale_out_lag(target, "classical-fallback")
    assert quantum < degrade, f"quantum executors reach max replicas at lag {quantum}"
    assert quantum + classical < pause, f"executors reach max at {quantum + classical}"


# ----------------------------------------------------------------------------------------
# Workloads.


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_are_hardened_probed_and_bounded(overlay: str) -> None:
    target = f"overlays/{overlay}"
    cfg = config(target)
    assert int(cfg["QBRIDGE_HTTP_PORT"]) == HTTP_PORT
    assert int(cfg["QBRIDGE_GRPC_PORT"]) == GatewaySettings().grpc_port
    for name in APP_SERVICES:
        w = workload(target, name)
        pod = w["spec"]["template"]["spec"]
        c = container(target, name)
        assert c["image"].split(":")[0] == f"qbridge/{name}"
        assert ":" in c["image"] and not c["image"].endswith(":latest")
        assert "command" not in c and "args" not in c, "the image's CMD starts the service"
        # Security: non-root, read-only root fs, no capabilities, RuntimeDefault seccomp.
        psc, csc = pod["securityContext"], c["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert csc["readOnlyRootFilesystem"] is True
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"]["drop"] == ["ALL"] and "add" not in csc["capabilities"]
        assert pod["automountServiceAccountToken"] is False
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in vols[mounts["/tmp"]], "HOME and TMPDIR need a writable /tmp"
        # Resources: requests and limits for CPU and memory.
        for res in ("cpu", "memory"):
            assert res in c["resources"]["requests"] and res in c["resources"]["limits"]
        # Configuration: the shared ConfigMap, the database URL from the Secret if used.
        env_from = [e["configMapRef"]["name"] for e in c["envFrom"]]
        assert len(env_from) == 1 and env_from[0].startswith("qbridge-config")
        env = {e["name"]: e for e in c.get("env", [])}
        uses_db = "database_url" in SETTINGS[name].model_fields
        assert ("DATABASE_URL" in env) == uses_db, name
        if uses_db:
            ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
            assert ref.startswith("qbridge-secrets"), ref
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["http-metrics"] == HTTP_PORT
        annotations = w["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(HTTP_PORT)
        assert w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "qbridge"
        # Probes and graceful termination.
        grace = pod["terminationGracePeriodSeconds"]
        if name == "gateway":
            assert ports["grpc"] == GatewaySettings().grpc_port
            # /readyz mirrors the gRPC health status (NOT_SERVING while dependencies are
            # down; a kubelet gRPC probe cannot speak TLS); liveness only asks whether
            # the process answers.
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
            assert grace >= 30
        else:
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
            # Static membership: the pod name is the group instance id.
            assert env["KAFKA_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
                "metadata.name"
            )
            assert w["spec"]["podManagementPolicy"] == "Parallel"
            assert grace >= (120 if name == "quantum-executor" else 45), name
            svc = one(target, "Service", w["spec"]["serviceName"])
            assert svc["spec"]["clusterIP"] == "None"


def test_prod_has_disruption_budgets_and_no_committed_secrets() -> None:
    target = "overlays/prod"
    pdbs = {p["metadata"]["name"] for p in objects(target, "PodDisruptionBudget")}
    assert pdbs == set(APP_SERVICES)
    assert objects(target, "Secret") == [], "production secrets come from a secret manager"
    assert one(target, "HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"] >= 2
    for name in CONSUMERS:
        assert one(target, "ScaledObject", name)["spec"]["minReplicaCount"] >= 2
    ns = objects(target, "Namespace")
    assert [n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] for n in ns] == [
        "restricted"
    ]
    assert all(
        d["metadata"].get("namespace") == ns[0]["metadata"]["name"]
        for d in render(target)
        if d["kind"] != "Namespace"
    )


def test_dev_secret_has_every_key_the_workloads_read() -> None:
    target = "overlays/dev"
    secrets = objects(target, "Secret")
    assert len(secrets) == 1
    keys = set(secrets[0]["data"])
    wanted = set()
    for d in render(target):
        pod = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert secrets[0]["metadata"]["name"] == ref["name"]
                    wanted.add(ref["key"])
    assert wanted == keys


# ----------------------------------------------------------------------------------------
# docker-compose.


def _env_lines(text: str) -> dict[str, str]:
    return {
        k: v
        for k, _, v in (line.partition("=") for line in text.splitlines())
        if k and not k.startswith("#")
    }


ENV_EXAMPLE = _env_lines((ROOT / ".env.example").read_text())
#: Secrets: empty in .env.example, `${VAR:?}` in docker-compose.yml.
SECRETS = (
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "QBRIDGE_API_KEYS",
    "QBRIDGE_KAFKA_ADMIN_PASSWORD",
    *(f"QBRIDGE_KAFKA_PASSWORD_{s.upper().replace('-', '_')}" for s in APP_SERVICES),
    "QBRIDGE_DB_PASSWORD_RESULTS_SINK",
    "QBRIDGE_DB_PASSWORD_ORCHESTRATOR",
    "QBRIDGE_DB_PASSWORD_GATEWAY",
    "QBRIDGE_TLS_DIR",
)


def _secret(name: str, value: str) -> str:
    """A stand-in value for ``name`` (a path for the folder variables)."""
    return f"./{value}" if name.endswith("_DIR") else value


def _compose(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with exactly ``env`` as its env file."""
    exe = ensure("docker-compose")["docker-compose"]
    clean = {k: v for k, v in os.environ.items() if k not in ENV_EXAMPLE}
    with tempfile.NamedTemporaryFile("w", suffix=".env") as env_file:
        env_file.write("".join(f"{k}={v}\n" for k, v in env.items()))
        env_file.flush()
        return subprocess.run(
            [exe, "--env-file", env_file.name, "-f", "docker-compose.yml", "config", *args],
            cwd=ROOT,
            env=clean,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@cache
def compose_config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it with .env.example, secrets filled."""
    proc = _compose({**ENV_EXAMPLE, **{k: _secret(k, f"test-{k.lower()}") for k in SECRETS}})
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)  # type: ignore[no-any-return]


def _published(port: str | dict[str, Any]) -> tuple[str, int]:
    """(host ip, container port) of a `ports` entry (docker-compose prints either form)."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), int(port["target"])
    parts = port.split("/")[0].split(":")
    return (parts[0] if len(parts) == 3 else ""), int(parts[-1])


def test_compose_file_is_valid_for_a_compose_parser_and_the_spec() -> None:
    cfg = compose_config()
    assert set(cfg["services"]) == {
        *APP_SERVICES, "kafka", "postgres", "kafka-init", "kafka-users", "db-init-results",
        "db-init-orchestrator", "prometheus", "grafana",
    }  # fmt: skip
    import check_jsonschema.builtin_schemas as builtin

    schema_path = Path(builtin.__file__).parent / "vendor" / "compose-spec.json"
    schema = json.loads(schema_path.read_text())
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(raw, schema)


def test_compose_requires_its_secrets() -> None:
    # .env.example ships no secret: used as it is, compose refuses to start.
    assert all(ENV_EXAMPLE[k] == "" for k in SECRETS)
    assert _compose(ENV_EXAMPLE, "-q").returncode != 0
    # Each secret on its own stops it, and the error names it.
    for secret in SECRETS:
        env = {**ENV_EXAMPLE, **{k: _secret(k, "set") for k in SECRETS if k != secret}}
        proc = _compose(env, "-q")
        assert proc.returncode != 0, secret
        assert secret in proc.stderr
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in SECRETS:
        assert re.search(rf"\$\{{{secret}:\?[^}}]+\}}", text), f"{secret} needs :? in compose"


def test_compose_resolves_the_local_images_with_the_throwaway_env() -> None:
    # make compose-test's env file (tools/containers/compose_test.py) points every image
    # at the locally built stand-ins and fills every secret.
    sys.path.insert(0, str(ROOT / "tools" / "containers"))
    import compose_test
    import images

    env = compose_test.throwaway_env("qbridge-unit", "k", "dev")
    proc = _compose(env)
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    assert services["kafka"]["image"] == images.kafka_image()
    assert services["postgres"]["image"] == images.POSTGRES_IMAGE
    assert set(compose_test.STACK) < set(services)
    for name in images.SERVICES:
        assert services[name]["image"] == images.service_image(name, "dev")
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == images.PYTHON_IMAGE
    gateway = services["gateway"]["environment"]
    assert json.loads(gateway["QBRIDGE_API_KEYS"]) == {"k": "compose-test"}


def test_compose_publishes_on_loopback_only() -> None:
    cfg = compose_config()
    published = {
        name: [_published(p) for p in svc.get("ports", [])] for name, svc in cfg["services"].items()
    }
    assert {n for n, p in published.items() if p} == {
        "kafka", "results-sink", "gateway", "prometheus", "grafana",
    }  # fmt: skip
    for name, ports in published.items():
        assert all(ip == "127.0.0.1" for ip, _ in ports), (name, ports)


def test_env_example_lists_every_variable_the_compose_file_reads() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = set(ENV_EXAMPLE)
    assert used <= example, f"missing from .env.example: {sorted(used - example)}"
    assert example - used == {"COMPOSE_PROJECT_NAME"}, sorted(example - used)


def test_compose_services_match_the_code_and_the_kubernetes_manifests() -> None:
    cfg = compose_config()
    services = cfg["services"]
    kafka_env = services["kafka"]["environment"]
    advertised = dict(
        item.split("://", 1) for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller", "KRaft, no ZooKeeper"
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    init = services["kafka-init"]
    assert init["command"][:3] == ["python", "-m", "ops.topics"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["kafka-users"]["command"] == ["python", "-m", "ops.kafka_users"]
    for name in APP_SERVICES:
        svc = services[name]
        assert svc["image"].startswith(f"qbridge/{name}:")
        assert svc["build"]["dockerfile"] == "Dockerfile"
        assert svc["build"]["target"] == name
        assert svc["build"]["args"]["PYTHON_IMAGE"] == ENV_EXAMPLE["QBRIDGE_PYTHON_IMAGE"]
        env = svc["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == advertised["INTERNAL"]
        assert env["QBRIDGE_HTTP_PORT"] == str(HTTP_PORT)
        assert env["QBRIDGE_CREATE_TOPICS"] == "false"
        assert "QBRIDGE_CONSUMER_GROUP" not in env, "groups come from topics.py defaults"
        assert "KAFKA_GROUP_INSTANCE_ID" not in env, "one static id would fence a scaled copy"
        deps = svc["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully"
        assert deps["kafka-users"]["condition"] == "service_completed_successfully"
        uses_db = "database_url" in SETTINGS[name].model_fields
        assert ("DATABASE_URL" in env) == uses_db, name
        if uses_db:
            # Migrated and given a login by the owner first (db-init-*).
            db_init = {d for d in deps if d.startswith("db-init-")}
            assert db_init and all(
                deps[d]["condition"] == "service_completed_successfully" for d in db_init
            ), name
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert svc["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "ops.healthcheck"]
        # Same stop grace as Kubernetes.
        k8s = workload("overlays/prod", name)["spec"]["template"]["spec"]
        seconds = int(str(svc["stop_grace_period"]).rstrip("s"))
        assert seconds == k8s["terminationGracePeriodSeconds"], name
    assert services["gateway"]["environment"]["QBRIDGE_GRPC_PORT"] == str(
        GatewaySettings().grpc_port
    )
    assert services["gateway"]["healthcheck"]["test"][-2:] == ["http", "/readyz"]
    published = {_published(p)[1] for p in services["results-sink"]["ports"]}
    assert published == {HTTP_PORT}, "the dashboard lives on the metrics port"
    # No topic is named anywhere but in topics.py.
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.findall(r"qbridge\.[a-z-]+\.v\d", text)


def test_prometheus_scrapes_every_service() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "qbridge")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:{HTTP_PORT}" for name in APP_SERVICES}


# ----------------------------------------------------------------------------------------
# Dockerfiles.


#: Other services' packages an image may still hold: none (no service imports another,
#: tests/unit/test_service_boundaries.py).
BORROWED: dict[str, set[str]] = {}


def _stages(path: Path) -> tuple[dict[str, str], dict[str, list[tuple[str, str]]]]:
    """(global ARG defaults, stage name -> its instructions incl. FROM) of a Dockerfile."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    args: dict[str, str] = {}
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            current = stages.setdefault(name.strip() or base, [])
        elif current is None and word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
            continue
        assert current is not None, f"{word} before the first FROM"
        current.append((word, rest))
    return args, stages


def _chain(stages: dict[str, list[tuple[str, str]]], target: str) -> list[tuple[str, str]]:
    """A target's instructions with its parents' before them (root stage first)."""
    ins = stages[target]
    parent = ins[0][1].split(" AS ")[0].strip()
    return (_chain(stages, parent) if parent in stages else []) + ins


DOCKERFILE_ARGS, DOCKERFILE_STAGES = _stages(ROOT / "Dockerfile")


def test_one_dockerfile_builds_every_service() -> None:
    assert not list((ROOT / "services").glob("*/Dockerfile")), "one shared Dockerfile"
    targets = {n for n in DOCKERFILE_STAGES if n not in ("runtime", "code")}
    assert targets == set(APP_SERVICES)
    runtime = DOCKERFILE_STAGES["runtime"]
    base = runtime[0][1].split(" AS ")[0]
    assert base == "${PYTHON_IMAGE}"
    default = DOCKERFILE_ARGS["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-bookworm)?(@sha256:[0-9a-f]{64})?", default)
    assert default == ENV_EXAMPLE["QBRIDGE_PYTHON_IMAGE"]
    steps = [w for w, _ in runtime]
    assert ("COPY", "requirements.lock ./") in runtime
    assert any(
        w == "RUN"
        and "pip install" in r
        and "--require-hashes" in r
        and "-r requirements.lock" in r
        for w, r in runtime
    )
    assert ("USER", "10001:10001") in runtime
    assert steps.index("USER") > max(i for i, w in enumerate(steps) if w in ("RUN", "COPY"))


@pytest.mark.parametrize("name", APP_SERVICES)
def test_dockerfile_target(name: str) -> None:
    own = DOCKERFILE_STAGES[name]
    assert own[0][1].split(" AS ")[0] == "runtime"
    # Nothing runs in a target: it only adds its package, so it stays non-root.
    assert {w for w, _ in own} <= {"FROM", "LABEL", "COPY", "ENV", "EXPOSE", "HEALTHCHECK", "CMD"}
    ins = _chain(DOCKERFILE_STAGES, name)
    users = [r for w, r in ins if w == "USER"]
    assert users == ["10001:10001"], "numeric non-root user (runAsNonRoot can verify it)"
    module = MODULES[name]
    assert (ROOT / "services" / name / module).is_dir()
    copied = {r.split()[-1].split("/")[1] for w, r in own if w == "COPY" and "services/" in r}
    assert name in copied
    assert copied - {name} <= BORROWED.get(name, set()), "no image holds another's code"
    assert (
        "COPY",
        f"--from=code /app/services/{name}/{module}/ services/{name}/{module}/",
    ) in own
    assert json.loads([r for w, r in ins if w == "CMD"][-1]) == ["python", "-m", module]
    env = " ".join(r for w, r in ins if w == "ENV")
    assert f"QBRIDGE_HTTP_PORT={HTTP_PORT}" in env
    assert f"/app/services/{name}" in next(r for w, r in own if w == "ENV")
    # HTTP for every image: the gateway's gRPC port speaks TLS only when configured.
    health = [r for w, r in ins if w == "HEALTHCHECK"][-1]
    assert '"ops.healthcheck", "http", "/healthz"' in health
    if name == "gateway":
        assert f"QBRIDGE_GRPC_PORT={GatewaySettings().grpc_port}" in env
    exposed = " ".join(r for w, r in ins if w == "EXPOSE")
    assert str(HTTP_PORT) in exposed


def test_dockerignore_keeps_the_context_small() -> None:
    lines = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".cache", "tests", "bench", "**/__pycache__"} <= lines
    for kept in ("libs", "schemas", "requirements.txt", "services", "tools/ops"):
        assert kept not in lines


#: Runtime requirements not pinned to one version yet (see the issue note): remove each
#: name from here when requirements.txt pins it.
NOT_YET_PINNED: set[str] = set()


@pytest.mark.parametrize("path", ["requirements.txt", "requirements-dev.txt"])
def test_runtime_requirements_and_dev_tools_are_pinned(path: str) -> None:
    unpinned = set()
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        name = re.split(r"[\[=<>!~ ]", line, maxsplit=1)[0].lower()
        if not re.search(r"==[\w.]+$", line):
            unpinned.add(name)
    assert unpinned <= NOT_YET_PINNED, f"pin these in {path}: {unpinned - NOT_YET_PINNED}"


def _lock_pins() -> dict[str, tuple[str, int]]:
    """requirements.lock: normalised name -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            pins[name] = (match.group(2), 0)
        elif "--hash=sha256:" in line and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def test_lock_file_pins_requirements_with_hashes() -> None:
    pins = _lock_pins()
    assert pins and all(hashes > 0 for _, hashes in pins.values()), "every pin has hashes"
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        name = re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()
        assert pins.get(name, ("missing",))[0] == version, f"{name}: run `make lock`"
