"""The gateway's front guard and hardening: checks made before a request is parsed.

Authentication and rate limits from metadata only, the receive limit and byte budget,
the adaptive Solve gate, per-tenant watch caps, per-call delivery results, liveness.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from gateway.jobs import JobFactory, JobPublisher
from qbridge.bus import BusProducer
from qbridge.bus.follower import EventHub, TopicFollower
from qbridge.bus.settings import KafkaSettings
from qbridge.contracts import AvroCodec, default_registry
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import DeliveryError, InvalidProblemError
from qbridge.problems.limits import Limits
from qbridge.service.grpc_errors import RETRY_AFTER_KEY
from qbridge.service.http import HttpEndpoint
from qbridge.validation.accept import RequestBounds
from tests.unit.test_gateway import maxcut_msg
from tests.unit.test_gateway_server import Gateway, detail, key, stub

SOLVE = "/qbridge.gateway.v1.Gateway/Solve"


def raw_solve(g: Gateway) -> Any:
    """Solve taking raw bytes: what reaches the server is exactly what we send."""
    return g.channel().unary_unary(
        SOLVE, request_serializer=None, response_deserializer=pb.SolveResponse.FromString
    )


def big_maxcut(num_nodes: int, per_node: int) -> pb.Problem:
    edges = [
        pb.WeightedEdge(u=i, v=(i + d) % num_nodes, weight=1.0 + d)
        for i in range(num_nodes)
        for d in range(1, per_node + 1)
    ]
    return pb.Problem(maxcut=pb.MaxCut(num_nodes=num_nodes, edges=edges))


# --- before parsing ---------------------------------------------------------------------


def test_unauthenticated_garbage_is_refused_without_being_parsed() -> None:
    g = Gateway()
    try:
        # Not a protobuf at all: parsing it would fail as INTERNAL; the key check comes first.
        garbage = b"\xff" * 1_500_000
        with pytest.raises(grpc.RpcError) as err:
            raw_solve(g)(garbage, metadata=(("x-api-key", "nope"),), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert detail(err.value).error_class == "unauthenticated"
        with pytest.raises(grpc.RpcError) as err:
            raw_solve(g)(garbage, metadata=key("key-a"), timeout=10)
        assert err.value.code() != grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    finally:
        g.stop()


def test_messages_over_the_receive_limit_are_refused_with_the_reason() -> None:
    g = Gateway(grpc_max_receive_bytes=200_000)
    try:
        big = pb.SolveRequest(problem=big_maxcut(2000, 10), deadline_ms=500)
        assert big.ByteSize() > 200_000
        with pytest.raises(grpc.RpcError) as err:
            stub(g).Solve(big, metadata=key("key-a"), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert "larger than max" in err.value.details()  # type: ignore[attr-defined]
        assert g.publisher.published == []
    finally:
        g.stop()


def test_requests_over_the_byte_budget_are_invalid_argument_too_large() -> None:
    g = Gateway(max_request_bytes=50_000)
    try:
        big = pb.SubmitRequest(problem=big_maxcut(1000, 5))
        with pytest.raises(grpc.RpcError) as err:
            stub(g).Submit(big, metadata=key("key-a"), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        d = detail(err.value)
        assert d.field == "problem.maxcut" and "too large" in d.reason and "50000" in d.reason
        assert g.publisher.published == []
    finally:
        g.stop()


def test_budget_needs_a_codec() -> None:
    with pytest.raises(ValueError, match="codec"):
        JobFactory(Limits(), RequestBounds(), max_request_bytes=10)


# --- tenant rate limits -------------------------------------------------------------------


def test_every_rpc_is_rate_limited_per_tenant_with_a_retry_hint() -> None:
    rates = {m: 1.0 for m in ("Solve", "Submit", "GetJob", "ListJobs", "WatchJob")}
    g = Gateway(tenant_rates=rates, tenant_burst_s=1.0)
    try:
        s = stub(g)
        calls = {
            "GetJob": lambda md: s.GetJob(pb.GetJobRequest(job_id="x"), metadata=md, timeout=5),
            "ListJobs": lambda md: s.ListJobs(pb.ListJobsRequest(), metadata=md, timeout=5),
            "WatchJob": lambda md: list(
                s.WatchJob(pb.WatchJobRequest(job_id="x"), metadata=md, timeout=5)
            ),
            "Submit": lambda md: s.Submit(
                pb.SubmitRequest(problem=maxcut_msg()), metadata=md, timeout=5
            ),
            "Solve": lambda md: s.Solve(
                pb.SolveRequest(problem=maxcut_msg(), deadline_ms=100), metadata=md, timeout=5
            ),
        }
        for name, call in calls.items():
            try:
                call(key("key-a"))  # the first one passes the bucket (whatever it answers)
            except grpc.RpcError as first:
                assert first.code() != grpc.StatusCode.RESOURCE_EXHAUSTED, name  # type: ignore[attr-defined]
            with pytest.raises(grpc.RpcError) as err:
                call(key("key-a"))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, name  # type: ignore[attr-defined]
            md = dict(err.value.trailing_metadata())  # type: ignore[attr-defined]
            assert 0 < int(md[RETRY_AFTER_KEY]) <= 1000
            assert detail(err.value).retry_after_ms == int(md[RETRY_AFTER_KEY])
            assert "rate limit" in err.value.details()  # type: ignore[attr-defined]
        try:
            calls["GetJob"](key("key-b"))
        except grpc.RpcError as other:  # another tenant is not limited by tenant-a's calls
            assert other.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    finally:
        g.stop()


# --- the Solve gate -------------------------------------------------------------------------


def test_solve_gate_refusal_on_the_wire() -> None:
    g = Gateway(max_inflight_solves=1, solve_min_limit=1)
    try:
        s = stub(g)
        slow = s.Solve.future(
            pb.SolveRequest(problem=maxcut_msg(), deadline_ms=1500), metadata=key("key-a")
        )
        while g.guard.gate is not None and g.guard.gate.inflight == 0:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as err:
            s.Solve(pb.SolveRequest(problem=maxcut_msg(), deadline_ms=500), metadata=key("key-b"))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert int(dict(err.value.trailing_metadata())[RETRY_AFTER_KEY]) > 0  # type: ignore[attr-defined]
        assert slow.result().result.solution.feasible
        assert g.guard.gate is not None and g.guard.gate.inflight == 0
    finally:
        g.stop()


def test_a_solve_grpc_refuses_itself_gives_its_gate_place_back() -> None:
    # gRPC's own call limit refuses after the guard took a gate place for the call.
    g = Gateway(max_concurrent_rpcs=1)
    try:
        s = stub(g)
        gate = g.guard.gate
        assert gate is not None
        slow = s.Solve.future(
            pb.SolveRequest(problem=maxcut_msg(), deadline_ms=1500), metadata=key("key-a")
        )
        while gate.inflight == 0:
            time.sleep(0.01)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as err:
                s.Solve(
                    pb.SolveRequest(problem=maxcut_msg(), deadline_ms=500), metadata=key("key-b")
                )
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        give_up = time.monotonic() + 5
        while gate.inflight > 1 and time.monotonic() < give_up:
            time.sleep(0.01)
        assert gate.inflight == 1  # only the running call holds a place
        assert slow.result().result.solution.feasible
        assert gate.inflight == 0
    finally:
        g.stop()


# --- watch caps per tenant ---------------------------------------------------------------


def test_one_tenant_cannot_take_every_watch_stream() -> None:
    g = Gateway(tenant_max_watchers=1)
    try:
        s = stub(g)
        sub = s.Submit(pb.SubmitRequest(problem=maxcut_msg()), metadata=key("key-a"), timeout=5)
        first = s.WatchJob(pb.WatchJobRequest(job_id=sub.job_id), metadata=key("key-a"))
        while g.service.tracker.streams.held == 0:  # wait for the stream to be open
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as err:
            list(s.WatchJob(pb.WatchJobRequest(job_id=sub.job_id), metadata=key("key-a")))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert "tenant has 1 WatchJob" in err.value.details()  # type: ignore[attr-defined]
        md = dict(err.value.trailing_metadata())  # type: ignore[attr-defined]
        assert int(md[RETRY_AFTER_KEY]) == detail(err.value).retry_after_ms == 1000
        with pytest.raises(grpc.RpcError) as err:  # tenant-b still gets a stream (here: ends)
            list(s.WatchJob(pb.WatchJobRequest(job_id=sub.job_id), metadata=key("key-b")))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        first.cancel()
    finally:
        g.stop()


# --- per-call delivery ------------------------------------------------------------------


class FakeKafkaError:
    def __init__(self, text: str) -> None:
        self.text = text

    def str(self) -> str:
        return self.text


class ReportingKafka:
    """librdkafka's producer, delivering reports on poll(); the message keyed ``fail-key`` fails."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, str, str]] = []
        self.lock = threading.Lock()
        self.both_sent = threading.Barrier(2)

    def produce(self, topic: str, value: Any, key: str, headers: Any, on_delivery: Any) -> None:
        with self.lock:
            self.pending.append((on_delivery, key, topic))
        self.both_sent.wait(5)

    def poll(self, timeout: float = 0.0) -> int:
        with self.lock:
            pending, self.pending = self.pending, []
        for cb, k, topic in pending:
            failed = FakeKafkaError("broker said no") if k.endswith("fail-key") else None
            cb(failed, SimpleNamespace(topic=lambda t=topic: t))
        time.sleep(timeout / 10)
        return len(pending)

    def flush(self, timeout: float = 0.0) -> int:
        raise AssertionError("a shared flush would mix up callers' failures")


def reporting_producer() -> BusProducer:
    producer = BusProducer(
        KafkaSettings(bootstrap_servers="127.0.0.1:9"), AvroCodec(default_registry()), "test"
    )
    producer._producer = ReportingKafka()  # type: ignore[assignment]
    return producer


def test_submit_reports_its_own_delivery_result_only() -> None:
    publisher = JobPublisher(reporting_producer())
    jobs = JobFactory(Limits(), RequestBounds())
    ok = jobs.prepare(
        "t", maxcut_msg(), pb.JobOptions(idempotency_key="ok-key"), timeout_ms=5000, call="submit"
    )
    bad = jobs.prepare(
        "t", maxcut_msg(), pb.JobOptions(idempotency_key="fail-key"), timeout_ms=5000, call="x"
    )
    results: dict[str, BaseException | None] = {}

    def run(job: Any) -> None:
        try:
            publisher.publish(job, flush_timeout_s=5)
            results[job.idempotency_key] = None
        except BaseException as exc:
            results[job.idempotency_key] = exc

    threads = [threading.Thread(target=run, args=(j,)) for j in (ok, bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results["ok-key"] is None
    assert isinstance(results["fail-key"], DeliveryError)
    assert "broker said no" in str(results["fail-key"]) and bad.job_id in str(results["fail-key"])


# --- hostile but well-formed problems ---------------------------------------------------------


def test_deep_json_and_overflowing_numbers_are_invalid_argument() -> None:
    jobs = JobFactory(Limits(), RequestBounds())
    deep = pb.Problem(json=pb.JsonProblem(type="maxcut", json="[" * 100_000 + "]" * 100_000))
    with pytest.raises(InvalidProblemError) as err:
        jobs.prepare("t", deep, pb.JobOptions(), timeout_ms=5000, call="submit")
    assert err.value.field == "problem.json"
    huge = maxcut_msg((1.7e308, 1.7e308, 1.7e308))
    with pytest.raises(InvalidProblemError) as err:
        jobs.prepare("t", huge, pb.JobOptions(), timeout_ms=5000, call="submit")
    assert (err.value.field or "").startswith("problem")


# --- liveness -------------------------------------------------------------------------------


def test_healthz_fails_once_the_event_follower_died() -> None:
    codec = AvroCodec(default_registry())
    hub = EventHub(KafkaSettings(bootstrap_servers="127.0.0.1:1"), codec)
    assert hub.alive() == (True, "ok")  # not started yet: nothing died
    follower = hub._follower
    assert isinstance(follower, TopicFollower)
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    follower._thread = dead
    assert hub.alive() == (False, "event follower died")
    http = HttpEndpoint("127.0.0.1", 0, lambda: (True, ""), live=hub.alive)
    status: list[str] = []
    body = http._app({"PATH_INFO": "/healthz"}, lambda s, h: status.append(s))
    assert status == ["503 Service Unavailable"] and b"died" in b"".join(body)
    follower._stop.set()  # stopped on purpose: not a death
    assert hub.alive() == (True, "ok")
