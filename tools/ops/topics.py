"""Create every pipeline topic (names, partitions, retention from :mod:`qbridge.topics`).

The one-shot ``kafka-init`` container of docker-compose runs ``python -m ops.topics``
before any service starts; on Kubernetes, Strimzi ``KafkaTopic`` resources do the same
(a test checks they match :mod:`qbridge.topics`). Existing topics are left alone but
checked: fewer partitions than the services assume is an error (keys would map to
other partitions than the co-partitioned topics expect).

Connection, replication factor and ``min.insync.replicas`` come from ``KAFKA_*``
(:class:`qbridge.bus.KafkaSettings`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from confluent_kafka.admin import AdminClient

from qbridge.bus import KafkaSettings, ensure_topics
from qbridge.errors import BusError
from qbridge.topics import ALL_TOPICS

logger = logging.getLogger(__name__)


def partition_counts(settings: KafkaSettings, timeout: float = 10.0) -> dict[str, int]:
    """Partition count of every existing topic."""
    md = AdminClient(settings.client_config()).list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def create_and_verify(settings: KafkaSettings, wait_s: float = 120.0) -> list[str]:
    """Create missing topics (retrying while the broker starts) and verify all of them.

    Returns:
        The topics created now.

    Raises:
        BusError: The broker did not answer in ``wait_s``, or a topic has the wrong layout.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            created = ensure_topics(settings)
            counts = partition_counts(settings)
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                raise BusError(f"Kafka at {settings.bootstrap_servers} not usable: {exc}") from exc
            logger.info("waiting for Kafka: %s", exc)
            time.sleep(2)
    problems = []
    for spec in ALL_TOPICS:
        got = counts.get(spec.name)
        if got is None:
            problems.append(f"{spec.name}: missing")
        elif got < spec.partitions:
            problems.append(f"{spec.name}: {got} partitions, services assume {spec.partitions}")
        elif got > spec.partitions:
            logger.warning("%s has %d partitions (> %d)", spec.name, got, spec.partitions)
    if problems:
        raise BusError("topic layout differs from qbridge.topics: " + "; ".join(problems))
    return created


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 0 when every topic exists with its partitions."""
    parser = argparse.ArgumentParser(prog="python -m ops.topics", description=__doc__)
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for Kafka")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = KafkaSettings()
    try:
        created = create_and_verify(settings, args.wait)
    except BusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for spec in ALL_TOPICS:
        mark = "created" if spec.name in created else "exists"
        print(f"{spec.name}\tpartitions={spec.partitions}\t{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
