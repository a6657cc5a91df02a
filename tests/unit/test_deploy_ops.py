"""The images' healthcheck entry point and the dashboard's rendering without a database."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ops import healthcheck
from qbridge.dashboard import DashboardApp, DashboardSettings, LagSnapshot
from qbridge.dashboard.page import render_page
from qbridge.dashboard.summary import reason_label
from qbridge.service.http import HttpEndpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_healthcheck(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = HttpEndpoint("127.0.0.1", 0, ready=lambda: (False, "warming up"))
    endpoint.start()
    try:
        monkeypatch.setenv("QBRIDGE_HTTP_PORT", str(endpoint.port))
        assert healthcheck.main(["http", "/healthz"]) == 0
        assert healthcheck.main([]) == 0  # default: /healthz
        assert healthcheck.main(["http", "/readyz"]) == 1  # 503 while not ready
    finally:
        endpoint.stop()
    assert healthcheck.main(["http", "/healthz"]) == 1  # nothing listening


@contextlib.contextmanager
def _grpc_health_server(port: int) -> Iterator[health.HealthServicer]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield servicer
    finally:
        server.stop(0)


def test_grpc_healthcheck(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("QBRIDGE_GRPC_PORT", str(port))
    assert healthcheck.main(["grpc"]) == 1  # nothing listening
    with _grpc_health_server(port) as servicer:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert healthcheck.main(["grpc"]) == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert healthcheck.main(["grpc"]) == 1


def _summary(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "generated_at": "2026-01-01T00:00:00+00:00",
        "window_s": 3600,
        "totals": {
            "jobs": 2,
            "by_status": {"degraded": 1, "succeeded": 1},
            "final": 2,
            "degraded": 1,
            "fallback_rate": 0.5,
            "quantum_answers": 1,
        },
        "routes": [
            {
                "route": "quantum",
                "backend": "aer_statevector",
                "solver": "qaoa",
                "status": "succeeded",
                "jobs": 1,
            },
            {
                "route": "classical",
                "backend": "ortools",
                "solver": "cp-sat",
                "status": "degraded",
                "jobs": 1,
            },
        ],
        "fallback": {
            "rate": 0.5,
            "degraded": 1,
            "final": 2,
            "reasons": [{"reason": "<b>circuit breaker open</b>", "jobs": 1}],
            "series": [
                {
                    "start": "2026-01-01T00:00:00+00:00",
                    "quantum": 1,
                    "classical": 0,
                    "degraded": 1,
                    "failed": 0,
                    "total": 2,
                    "fallback_rate": 0.5,
                },
            ],
        },
        "latency": [{"route": "quantum", "jobs": 1, "p50_ms": 900.0, "p95_ms": 1500.0}],
        "quality": [
            {
                "problem_type": "maxcut",
                "route": "quantum",
                "attempts": 1,
                "ok": 1,
                "feasible": 1,
                "feasible_rate": 1.0,
                "mean_gap": 0.0,
                "at_best": 1,
                "at_best_rate": 1.0,
                "head_to_head": 1,
            },
        ],
        "race": [],
        "lag": {
            "available": True,
            "read_at": None,
            "error": None,
            "groups": [{"group": "qbridge-quantum-executor", "topics": {}, "total": 25}],
            "thresholds": {"degrade_quantum_lag": 20, "pause_low_priority_lag": 200},
        },
        "recent": [
            {
                "job_id": "<script>alert(1)</script>",
                "tenant": "t&t",
                "problem_type": "maxcut",
                "status": "degraded",
                "route": "classical",
                "backend": "ortools",
                "solver": "cp-sat",
                "objective": 3.5,
                "feasible": True,
                "reason": "x < y",
                "attempts": 2,
                "latency_ms": 1200.0,
                "created_at": None,
                "completed_at": "2026-01-01T00:00:01+00:00",
            },
        ],
    }
    base.update(over)
    return base


def test_page_escapes_everything_and_needs_no_scripts() -> None:
    html = render_page(_summary(), window_min=60, refresh_s=15)
    assert "<script" not in html
    assert "&lt;script&gt;" in html and "t&amp;t" in html and "x &lt; y" in html
    assert "&lt;b&gt;circuit breaker open" in html
    assert '<meta http-equiv="refresh" content="15">' in html
    assert "degrade quantum &gt; 20" in html
    assert "pause low priority &gt; 200" in html  # lag 25 is above the first threshold
    assert html.count("<svg") >= 8


def test_page_without_any_data_still_renders() -> None:
    empty = _summary(
        totals={
            "jobs": 0,
            "by_status": {},
            "final": 0,
            "degraded": 0,
            "fallback_rate": None,
            "quantum_answers": 0,
        },
        routes=[],
        latency=[],
        quality=[],
        recent=[],
        fallback={"rate": None, "degraded": 0, "final": 0, "reasons": [], "series": []},
        lag={
            "available": False,
            "read_at": None,
            "error": "lag is not read by this process",
            "groups": [],
            "thresholds": {"degrade_quantum_lag": 20, "pause_low_priority_lag": 200},
        },
    )
    html = render_page(empty, window_min=15, refresh_s=0)
    assert "no jobs yet" in html and "no data yet" in html
    assert "http-equiv" not in html


def test_database_errors_answer_503() -> None:
    def broken() -> Any:
        raise OSError("connection refused")

    app = DashboardApp(broken, lag=lambda: LagSnapshot(), settings=DashboardSettings())
    calls: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        calls.append(status)

    body = b"".join(app.api({"QUERY_STRING": "window=abc&limit=99999"}, start_response))
    assert calls[-1].startswith("503") and "connection refused" in json.loads(body)["error"]
    page = b"".join(app.page({"QUERY_STRING": ""}, start_response)).decode()
    assert calls[-1].startswith("503") and "results database unavailable" in page
    assert set(app.routes()) == {"/dashboard", "/dashboard/", "/api/summary"}
    assert DashboardApp(broken, settings=DashboardSettings(dashboard_enabled=False)).routes() == {}


def test_reason_labels_group_similar_reasons() -> None:
    assert reason_label("quantum executor lag 25 > 20; retried") == "quantum executor lag N > N"
    assert reason_label("quantum did not answer within 11908 ms") == (
        "quantum did not answer within N ms"
    )
    assert reason_label(None) == "unspecified"
