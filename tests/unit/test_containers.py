"""tools/containers: the throwaway compose environment and the Kafka stand-in's config.

The images themselves are built and run by ``make compose-test`` (CI); these tests check
the parts that decide what that run configures, without podman.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "containers"))

import compose_test  # noqa: E402
import images  # noqa: E402

from devstack.kafka import KAFKA_VERSION  # noqa: E402


def test_throwaway_env_fills_every_variable_with_fresh_secrets_and_free_ports() -> None:
    example = compose_test.parse_env((ROOT / ".env.example").read_text())
    first = compose_test.throwaway_env("p1", "key-1", "dev")
    second = compose_test.throwaway_env("p2", "key-2", "dev")
    assert set(example) <= set(first)
    assert all(first[k] for k in example), "no variable left empty"
    for secret in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert len(first[secret]) >= 24 and first[secret] != second[secret]
    assert json.loads(first["QBRIDGE_API_KEYS"]) == {"key-1": "compose-test"}
    ports = [int(first[v]) for v in compose_test.PORT_VARS]
    assert len(set(ports)) == len(ports) and all(p > 1024 for p in ports)
    assert first["COMPOSE_PROJECT_NAME"] == "p1"
    assert first["QBRIDGE_KAFKA_IMAGE"] == f"localhost/qbridge-local/kafka:{KAFKA_VERSION}"
    assert compose_test.parse_env(compose_test.render_env(first)) == first


def test_kafka_standin_maps_variables_like_the_official_image() -> None:
    script = ROOT / "tools" / "containers" / "base" / "kafka-bin" / "kafka-entrypoint.sh"
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        "KAFKA_CONFLUENT__SUPPORT___X": "y",
        "KAFKA_HEAP_OPTS": "-Xmx1g",
        "CLUSTER_ID": "abc",
    }
    proc = subprocess.run(
        ["bash", str(script), "--print-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert proc.stdout.splitlines() == [
        "confluent_support-x=y",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT",
        "log.dirs=/var/lib/kafka/data",
        "node.id=1",
        "process.roles=broker,controller",
    ]


def test_every_compose_service_image_has_a_build_target() -> None:
    targets = {
        line.split(" AS ")[1].strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ") and " AS " in line
    }
    assert set(images.SERVICES) <= targets
