"""ops.db_init: which logins a schema's one-shot job creates, and what it refuses."""

from __future__ import annotations

import pytest

from ops import db_init
from qbridge.errors import ConfigurationError


def test_every_database_service_gets_a_login_from_exactly_one_schema() -> None:
    served = [s for logins in db_init.SCHEMA_LOGINS.values() for s in logins]
    assert sorted(served) == sorted(db_init.SERVICE_DB_ROLES)
    assert db_init.login_name("results-sink") == "results_sink_svc"
    assert db_init.password_env("results-sink") == "QBRIDGE_DB_PASSWORD_RESULTS_SINK"


def test_a_missing_password_is_refused_before_touching_the_database() -> None:
    # No database behind this URL: the password check must come first.
    with pytest.raises(
        ConfigurationError, match=r"QBRIDGE_DB_PASSWORD_GATEWAY \(or QBRIDGE_DB_URL_GATEWAY\)"
    ):
        db_init.init_schema(
            "results-sink",
            "postgresql://nobody@127.0.0.1:1/none",
            {"QBRIDGE_DB_PASSWORD_RESULTS_SINK": "x"},
        )


def test_an_unknown_schema_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown schema"):
        db_init.init_schema("intake", "postgresql://nobody@127.0.0.1:1/none", {})


def test_a_password_comes_from_the_login_url_when_not_given_alone() -> None:
    env = {"QBRIDGE_DB_URL_GATEWAY": "postgresql://gateway_svc:s3cret@db:5432/qbridge"}
    assert db_init.login_password("gateway", env) == "s3cret"
    # The explicit password wins.
    assert db_init.login_password("gateway", {**env, "QBRIDGE_DB_PASSWORD_GATEWAY": "x"}) == "x"
    # A URL for another login (e.g. the owner's pasted by mistake) is refused.
    with pytest.raises(ConfigurationError, match="must log in as gateway_svc"):
        db_init.login_password(
            "gateway", {"QBRIDGE_DB_URL_GATEWAY": "postgresql://qbridge:pw@db:5432/qbridge"}
        )
