"""``python -m gateway``: settings -> server -> serve until SIGTERM (graceful)."""

from __future__ import annotations

import sys

from gateway.config import GatewaySettings
from gateway.server import SERVICE, GatewayServer
from qbridge.service import ServiceRuntime


def main() -> int:
    """Run the gateway; returns the exit code."""
    settings = GatewaySettings()
    runtime = ServiceRuntime(SERVICE, settings)
    server = GatewayServer(settings)
    return runtime.serve(
        server.run,
        stop=server.request_stop,
        ready=server.ready,
        on_exit=server.close,
        live=server.hub.alive,
    )


if __name__ == "__main__":
    sys.exit(main())
