"""The gateway's gRPC surface on a real in-process server (no Kafka, no database).

Status codes and error details, initial metadata, health, reflection, TLS, and the
generated stubs being up to date with the .proto.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from gateway.admission import Admission
from gateway.config import GatewaySettings
from gateway.jobs import JobFactory
from gateway.local import LocalSolverPool
from gateway.server import GATEWAY_SERVICE_NAME, make_grpc_server, make_guard
from gateway.service import ERROR_DETAIL_KEY, JOB_ID_KEY, GatewayService
from gateway.solve import DeadlinePolicy, SolveCoordinator
from gateway.tracking import JobTracker
from qbridge.bus.follower import EventHub
from qbridge.contracts import AvroCodec, default_registry
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qbridge.problems.limits import Limits
from qbridge.results.read import StoredJob
from qbridge.service.auth import Authenticator
from qbridge.topics import JOB_OUTCOMES, JOB_STATUS
from qbridge.validation.accept import RequestBounds
from tests.unit.test_gateway import FakePublisher, FakeReader, maxcut_msg, outcome, transition

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"key-a": "tenant-a", "key-b": "tenant-b", "key-vip": "vip"}


class Gateway:
    """A gateway servicer wired to fakes, served on a free localhost port."""

    def __init__(self, tmp: Path | None = None, *, tls: bool = False, **settings: Any) -> None:
        opts: dict[str, Any] = {
            "grpc_host": "127.0.0.1",
            "grpc_port": 0,
            "grpc_workers": 8,
            "api_keys": KEYS,
            "premium_tenants": ["vip"],
            **settings,
        }
        if tls:
            assert tmp is not None
            opts.update(tls_cert=str(tmp / "cert.pem"), tls_key=str(tmp / "key.pem"))
        self.settings = GatewaySettings(**opts)
        s = self.settings
        self.hub = EventHub(None, AvroCodec(default_registry()))
        self.hub.start()
        self.reader = FakeReader()
        self.publisher = FakePublisher()
        self.pool = LocalSolverPool(workers=1)
        self.admission = Admission(
            max_inflight=s.max_inflight_solves,
            tenant_max_inflight=s.tenant_max_inflight,
            low_priority_below=s.low_priority_below,
            reject_low_priority_lag=s.reject_low_priority_lag,
            reject_submit_lag=s.reject_submit_lag,
            lag=lambda: self.lag,
        )
        self.lag: int | None = None
        jobs = JobFactory(
            Limits(),
            RequestBounds(),
            known_backends=s.known_backends,
            premium_backends=s.premium_backends,
            premium_tenants=s.premium_tenants,
            codec=AvroCodec(default_registry()),
            max_request_bytes=s.max_request_bytes,
        )
        auth = Authenticator(s.api_keys)
        self.service = GatewayService(
            auth,
            jobs,
            self.publisher,  # type: ignore[arg-type]
            self.hub,
            SolveCoordinator(
                jobs,
                self.publisher,  # type: ignore[arg-type]
                self.hub,
                self.pool,
                self.admission,
                DeadlinePolicy(),
                self.reader,  # type: ignore[arg-type]
            ),
            JobTracker(  # type: ignore[arg-type]
                self.reader, self.hub, max_watchers=2, tenant_max_watchers=s.tenant_max_watchers
            ),
            self.admission,
        )
        self.guard = make_guard(s, auth)
        self.health = health.HealthServicer()
        self.server, self.port = make_grpc_server(s, self.service, self.health, self.guard)
        self.server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set(GATEWAY_SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def stop(self) -> None:
        self.server.stop(0).wait()
        self.pool.close()


@pytest.fixture
def gw() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.stop()


def stub(g: Gateway) -> pb_grpc.GatewayStub:
    return pb_grpc.GatewayStub(g.channel())


def key(k: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {k}"),)


def detail(err: grpc.RpcError) -> pb.ErrorDetail:
    for k, v in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if k == ERROR_DETAIL_KEY:
            return pb.ErrorDetail.FromString(v)
    raise AssertionError("no error detail")


def test_unknown_or_missing_key_is_unauthenticated(gw: Gateway) -> None:
    s = stub(gw)
    for md in ((), (("x-api-key", "wrong"),), (("authorization", "Basic key-a"),)):
        with pytest.raises(grpc.RpcError) as err:
            s.GetJob(pb.GetJobRequest(job_id="x"), metadata=md, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert detail(err.value).error_class == "unauthenticated"
    with pytest.raises(grpc.RpcError) as err:
        list(s.WatchJob(pb.WatchJobRequest(job_id="x"), metadata=(), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_invalid_problem_is_invalid_argument_with_the_field(gw: Gateway) -> None:
    s = stub(gw)
    bad = maxcut_msg((1.0, float("nan"), 1.0))
    for call in (
        lambda: s.Solve(pb.SolveRequest(problem=bad, deadline_ms=500), metadata=key("key-a")),
        lambda: s.Submit(pb.SubmitRequest(problem=bad), metadata=key("key-a")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        d = detail(err.value)
        assert d.field == "problem.maxcut.edges[1].weight"
        assert "finite" in d.reason and d.error_class == "invalid_input"
        assert err.value.details().startswith("problem.maxcut.edges[1].weight: ")  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        s.Solve(pb.SolveRequest(problem=maxcut_msg(), deadline_ms=-5), metadata=key("key-a"))
    assert detail(err.value).field == "deadline_ms"
    assert gw.publisher.published == []


def test_other_tenants_jobs_are_not_found(gw: Gateway) -> None:
    s = stub(gw)
    sub = s.Submit(pb.SubmitRequest(problem=maxcut_msg()), metadata=key("key-a"), timeout=5)
    assert sub.status == pb.JOB_STATUS_SUBMITTED
    again = s.Submit(pb.SubmitRequest(problem=maxcut_msg()), metadata=key("key-a"), timeout=5)
    assert again.job_id == sub.job_id  # same problem, same tenant, no key: same job
    got = s.GetJob(pb.GetJobRequest(job_id=sub.job_id), metadata=key("key-a"), timeout=5)
    assert got.status == pb.JOB_STATUS_SUBMITTED and got.tenant == "tenant-a"
    for call in (
        lambda: s.GetJob(pb.GetJobRequest(job_id=sub.job_id), metadata=key("key-b"), timeout=5),
        lambda: list(
            s.WatchJob(pb.WatchJobRequest(job_id=sub.job_id), metadata=key("key-b"), timeout=5)
        ),
        lambda: s.GetJob(pb.GetJobRequest(job_id="no-such-job"), metadata=key("key-a"), timeout=5),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_premium_backend_needs_a_premium_tenant(gw: Gateway) -> None:
    s = stub(gw)
    req = pb.SubmitRequest(problem=maxcut_msg(), options=pb.JobOptions(backend="ibm_runtime"))
    with pytest.raises(grpc.RpcError) as err:
        s.Submit(req, metadata=key("key-a"), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert s.Submit(req, metadata=key("key-vip"), timeout=5).job_id


def test_overload_is_resource_exhausted() -> None:
    g = Gateway(max_inflight_solves=1)
    try:
        s = stub(g)
        slow = s.Solve.future(
            pb.SolveRequest(problem=maxcut_msg(), deadline_ms=1500), metadata=key("key-a")
        )
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as err:
            s.Solve(pb.SolveRequest(problem=maxcut_msg(), deadline_ms=500), metadata=key("key-b"))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert detail(err.value).retry_after_ms > 0
        assert slow.result().source == pb.ANSWER_SOURCE_GATEWAY
        g.lag = 10_000  # executors far behind: low priority refused, normal priority hedged
        low = pb.JobOptions(priority=1)
        with pytest.raises(grpc.RpcError) as err:
            s.Submit(pb.SubmitRequest(problem=maxcut_msg(), options=low), metadata=key("key-a"))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert "lag" in err.value.details()  # type: ignore[attr-defined]
        r = s.Solve(pb.SolveRequest(problem=maxcut_msg(), deadline_ms=100), metadata=key("key-a"))
        assert r.result.solution.feasible
    finally:
        g.stop()


def test_solve_sends_the_job_id_first_and_honours_the_grpc_deadline(gw: Gateway) -> None:
    # Invoked as unary-stream (wire-compatible), the headers arrive before the answer.
    solve = gw.channel().unary_stream(
        "/qbridge.gateway.v1.Gateway/Solve",
        request_serializer=pb.SolveRequest.SerializeToString,
        response_deserializer=pb.SolveResponse.FromString,
    )
    t0 = time.monotonic()
    call = solve(pb.SolveRequest(problem=maxcut_msg()), metadata=key("key-a"), timeout=0.4)
    md = dict(call.initial_metadata())
    headers_s = time.monotonic() - t0
    [r] = list(call)  # past the 0.4 s gRPC deadline this would raise DEADLINE_EXCEEDED
    assert md[JOB_ID_KEY] == r.job_id
    assert headers_s < r.deadline_ms / 1000  # the job id came before the deadline's answer
    assert r.deadline_ms <= 400
    assert r.result.solution.feasible and r.source == pb.ANSWER_SOURCE_GATEWAY


def test_watch_streams_in_order_and_list_jobs(gw: Gateway) -> None:
    s = stub(gw)
    job = "job-w"
    gw.reader.jobs[job] = StoredJob(
        {"tenant": "tenant-b", "status": "accepted", "status_seq": 1}, None
    )
    gw.reader.trans[job] = [transition(job, 1, "accepted")]

    def live() -> None:
        time.sleep(0.2)
        gw.hub.dispatch(JOB_STATUS.name, transition(job, 2, "routed", "accepted"), {})
        gw.hub.dispatch(JOB_STATUS.name, transition(job, 3, "succeeded", "routed"), {})
        gw.hub.dispatch(JOB_OUTCOMES.name, outcome(job), {})

    threading.Thread(target=live).start()
    updates = list(s.WatchJob(pb.WatchJobRequest(job_id=job), metadata=key("key-b"), timeout=10))
    assert [u.transition.seq for u in updates] == [1, 2, 3]
    assert updates[-1].final and updates[-1].result.solution.objective == 4.0


def test_reflection_is_opt_in(gw: Gateway) -> None:
    db = ProtoReflectionDescriptorDatabase(gw.channel())
    with pytest.raises(grpc.RpcError) as err:
        list(db.get_services())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_health_and_reflection_answer_without_a_key() -> None:
    gw = Gateway(grpc_reflection=True)
    try:
        _health_and_reflection(gw)
    finally:
        gw.stop()


def _health_and_reflection(gw: Gateway) -> None:
    ch = gw.channel()
    h = health_pb2_grpc.HealthStub(ch)
    for name in ("", GATEWAY_SERVICE_NAME):
        resp = h.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    db = ProtoReflectionDescriptorDatabase(ch)
    services = set(db.get_services())
    assert {GATEWAY_SERVICE_NAME, "grpc.health.v1.Health"} <= services
    desc = db.FindFileContainingSymbol(GATEWAY_SERVICE_NAME)
    assert desc.package == "qbridge.gateway.v1"
    assert {m.name for m in desc.service[0].method} == {
        "Solve",
        "Submit",
        "GetJob",
        "WatchJob",
        "ListJobs",
        "Approve",
        "Reject",
        "ListPending",
    }


def test_tls_when_certificates_are_configured(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to create a test certificate")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    g = Gateway(tmp_path, tls=True)
    try:
        creds = grpc.ssl_channel_credentials((tmp_path / "cert.pem").read_bytes())
        secure = grpc.secure_channel(f"localhost:{g.port}", creds)
        s = pb_grpc.GatewayStub(secure)
        r = s.Submit(pb.SubmitRequest(problem=maxcut_msg()), metadata=key("key-a"), timeout=5)
        assert r.job_id
        plain = pb_grpc.GatewayStub(g.channel())
        with pytest.raises(grpc.RpcError) as err:
            plain.Submit(pb.SubmitRequest(problem=maxcut_msg()), metadata=key("key-a"), timeout=3)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    finally:
        g.stop()


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "schemas/proto/generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = ROOT / "libs/qbridge/contracts/gen"

    def files(base: Path) -> dict[str, Path]:
        return {
            str(p.relative_to(base)): p
            for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    fresh, have = files(tmp_path), files(committed)
    assert sorted(fresh) == sorted(have), "run `make proto`"
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], have[name], shallow=False)]
    assert not stale, f"stale generated files {stale}: run `make proto`"
