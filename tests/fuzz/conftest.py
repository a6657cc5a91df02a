"""Hypothesis profiles of the fuzz targets.

``make test`` runs each target with ``qbridge-test`` (10,000 generated inputs); ``make fuzz``
selects ``qbridge-fuzz`` (many more) through ``QBRIDGE_FUZZ_PROFILE``. No example database:
runs do not depend on what earlier runs found (findings become explicit unit tests).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # a shared 2-core machine: timing says nothing about correctness
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("qbridge-test", max_examples=10_000, **_COMMON)
settings.register_profile(
    "qbridge-fuzz", max_examples=int(os.environ.get("QBRIDGE_FUZZ_EXAMPLES", "200000")), **_COMMON
)
settings.load_profile(os.environ.get("QBRIDGE_FUZZ_PROFILE", "qbridge-test"))
