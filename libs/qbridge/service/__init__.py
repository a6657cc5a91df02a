"""What every service shares: settings base, structured logs, metrics/health HTTP, lifecycle."""

from qbridge.service.lifecycle import ServiceRuntime
from qbridge.service.logs import configure_logging, log_context
from qbridge.service.settings import ServiceSettings

__all__ = ["ServiceRuntime", "ServiceSettings", "configure_logging", "log_context"]
