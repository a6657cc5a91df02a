"""Create the services' SCRAM users and least-privilege ACLs on a running broker.

For brokers whose storage was formatted without ``--add-scram`` (e.g. the compose
Kafka): run as a one-shot job with a super user's ``KAFKA_*`` settings (SASL/PLAIN
admin from the broker's JAAS config) and one password per service in
``QBRIDGE_KAFKA_PASSWORD_<SERVICE>`` (``INTAKE``, ``ORCHESTRATOR``, ``QUANTUM_EXECUTOR``,
``CLASSICAL_FALLBACK``, ``RESULTS_SINK``, ``GATEWAY``)::

    python -m ops.kafka_users

Idempotent: credentials are upserted, existing ACLs stay.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from qbridge.bus import KafkaSettings
from qbridge.bus.acls import SERVICE_ACCESS
from qbridge.bus.admin import apply_acls
from qbridge.errors import BusError, ConfigurationError

logger = logging.getLogger(__name__)

PASSWORD_ENV = "QBRIDGE_KAFKA_PASSWORD_{}"
ITERATIONS = 8192


def passwords_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """Service name -> password, from ``QBRIDGE_KAFKA_PASSWORD_<SERVICE>``.

    Raises:
        ConfigurationError: A service's password is missing or empty.
    """
    found = {}
    for service in SERVICE_ACCESS:
        name = PASSWORD_ENV.format(service.upper().replace("-", "_"))
        if not env.get(name):
            raise ConfigurationError(f"{name} is not set")
        found[service] = env[name]
    return found


def apply(admin: KafkaSettings, passwords: Mapping[str, str], timeout: float = 30.0) -> int:
    """Upsert the SCRAM-SHA-512 credential of each service, then grant its ACLs.

    Args:
        admin: Settings of a super user.
        passwords: Service name -> password.
        timeout: Seconds allowed per request.

    Returns:
        The number of ACL bindings sent.

    Raises:
        BusError: The broker refused a credential or an ACL.
    """
    client = AdminClient(admin.client_config())
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(SERVICE_ACCESS[s].principal, info, p.encode())
        for s, p in passwords.items()
    ]
    for user, fut in client.alter_user_scram_credentials(upserts).items():
        try:
            fut.result(timeout)
        except Exception as exc:  # KafkaException from the broker
            raise BusError(f"SCRAM credential of {user}: {exc}") from exc
    return apply_acls(admin, [SERVICE_ACCESS[s] for s in passwords], timeout)


def main() -> int:
    """Entry point of ``python -m ops.kafka_users``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sent = apply(KafkaSettings(), passwords_from_env(os.environ))
    print(f"SCRAM users and {sent} ACL bindings applied for {len(SERVICE_ACCESS)} services")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
