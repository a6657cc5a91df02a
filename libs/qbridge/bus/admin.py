"""Topic and ACL administration: create missing topics, grant services their ACLs."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from qbridge.bus.acls import ServiceAccess, grants
from qbridge.bus.settings import KafkaSettings
from qbridge.errors import BusError
from qbridge.topics import ALL_TOPICS, TOPIC_MAX_MESSAGE_BYTES, TopicSpec

logger = logging.getLogger(__name__)


def ensure_topics(
    settings: KafkaSettings, specs: Sequence[TopicSpec] = ALL_TOPICS, timeout: float = 30.0
) -> list[str]:
    """Create missing topics with the partition counts the services assume.

    Returns:
        Names of the topics created (existing ones are left alone).

    Raises:
        BusError: Creation failed for another reason than 'already exists'.
    """
    admin = AdminClient(settings.client_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [s for s in specs if s.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=settings.replication_factor,
                config={
                    "retention.ms": str(s.retention_ms),
                    "min.insync.replicas": str(settings.min_insync_replicas),
                    "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
                },
            )
            for s in wanted
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BusError(f"creating topic {name}: {exc}") from exc
    logger.info("created topics: %s", ", ".join(created))
    return created


_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}


def acl_bindings(access: ServiceAccess) -> list[AclBinding]:
    """The ALLOW bindings granting one service its access (from any host).

    Args:
        access: The service's access (see :data:`qbridge.bus.acls.SERVICE_ACCESS`).

    Returns:
        One binding per grant.
    """
    return [
        AclBinding(
            _RESOURCES[resource],
            name,
            _PATTERNS[pattern],
            f"User:{access.principal}",
            "*",
            AclOperation[operation.upper()],
            AclPermissionType.ALLOW,
        )
        for resource, pattern, name, operation in grants(access)
    ]


def apply_acls(
    settings: KafkaSettings, accesses: Sequence[ServiceAccess], timeout: float = 30.0
) -> int:
    """Create the ACLs of ``accesses`` (existing identical bindings are a no-op).

    Args:
        settings: Connection settings of a principal allowed to ALTER the cluster.
        accesses: Services to grant.
        timeout: Seconds allowed.

    Returns:
        The number of bindings sent.

    Raises:
        BusError: The broker refused or failed a binding.
    """
    bindings = [b for access in accesses for b in acl_bindings(access)]
    if not bindings:
        return 0
    admin = AdminClient(settings.client_config())
    for binding, fut in admin.create_acls(bindings, request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            raise BusError(f"creating ACL {binding}: {exc}") from exc
    logger.info("applied %d ACL bindings for %d principals", len(bindings), len(accesses))
    return len(bindings)
