"""Local Kafka (KRaft) + PostgreSQL as plain processes, for dev shells and tests.

Import with ``tools/`` on ``sys.path`` (``PYTHONPATH=tools``). See README.md.
"""

from devstack.errors import DevstackError, PortInUseError
from devstack.kafka import KAFKA_VERSION, KafkaBroker, ensure_jars
from devstack.postgres import PostgresServer, ensure_postgres_installed
from devstack.stack import LocalStack

__all__ = [
    "KAFKA_VERSION",
    "DevstackError",
    "KafkaBroker",
    "LocalStack",
    "PortInUseError",
    "PostgresServer",
    "ensure_jars",
    "ensure_postgres_installed",
]
