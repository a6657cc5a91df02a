"""Benchmark of request validation on large problems: numpy checks vs element-wise Python.

The gateway validates a Solve request before it can start its local answer, and intake,
the orchestrator and the executors decode the same problems, so validation of a
20,000-edge graph is on the latency-critical path. This measures, side by side in one
run on random graphs of Gset size (generated here, seeded):

1. ``index_triples`` (vectorised, the default) against its element-wise pass (the one that
   names the invalid field; used only when the fast checks refuse the input);
2. ``accept_request`` (validates once and returns the problem model) against the former
   gateway path, ``accept`` followed by ``problem_from_avro`` of the normalized record;
3. on small graphs (the high-rate traffic every service decodes several times), the
   Python-loop fast path ``_valid_triples_small`` against the numpy one ``_valid_triples``
   (``index_triples`` switches at ``SMALL_TRIPLES``), and ``problem_from_avro`` end to end.

Usage::

    .venv/bin/python bench/bench_validation.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from qbridge.contracts.convert import problem_from_avro, problem_to_avro
from qbridge.problems import Limits
from qbridge.problems._validation import (
    SMALL_TRIPLES,
    _triples_elementwise,
    _valid_triples,
    _valid_triples_small,
    index_triples,
)
from qbridge.problems.maxcut import MaxCut
from qbridge.validation import accept, accept_request

SIZES = ((800, 19_176), (2_000, 19_990), (5_000, 10_000))
"""(nodes, edges) of G1, G22 and G55-like graphs."""

SMALL_SIZES = ((8, 12), (16, 40), (32, 100), (48, 128), (64, 200), (100, 400))
"""(nodes, edges) of small graphs, around the ``SMALL_TRIPLES`` switch."""


def graph(nodes: int, edges: int, seed: int) -> list[list[Any]]:
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    while len(seen) < edges:
        u, v = rng.randrange(nodes), rng.randrange(nodes)
        if u != v:
            seen.add((min(u, v), max(u, v)))
    return [[u, v, float(rng.choice((-1, 1)))] for u, v in seen]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1] if len(xs) > 1 else xs[0]


def request(problem: MaxCut) -> dict[str, Any]:
    _name, record = problem_to_avro(problem)
    return {
        "request_id": "bench",
        "tenant": "bench",
        "problem_type": "maxcut",
        "problem": record,
        "created_at": datetime.now(UTC),
    }


def measure(nodes: int, edges: int, repeat: int) -> dict[str, list[float]]:
    """Milliseconds per call of each variant on one random graph."""
    triples = graph(nodes, edges, seed=nodes)
    req = request(MaxCut(nodes, tuple((u, v, w) for u, v, w in triples)))
    now = datetime.now(UTC)

    def before() -> None:
        env = accept(req, now, Limits())
        problem_from_avro(env["problem_type"], env["problem"][1])

    return {
        "numpy": timed(lambda: index_triples(triples, nodes, "e", allow_diagonal=False), repeat),
        "loop": timed(
            lambda: _triples_elementwise(triples, nodes, "e", allow_diagonal=False), repeat
        ),
        "once": timed(lambda: accept_request(req, now, Limits()), repeat),
        "twice": timed(before, repeat),
    }


def measure_small(nodes: int, edges: int, repeat: int) -> dict[str, list[float]]:
    """Microseconds per call of each fast path (and of a full decode) on one small graph."""
    triples = graph(nodes, edges, seed=nodes)
    _name, record = problem_to_avro(MaxCut(nodes, tuple((u, v, w) for u, v, w in triples)))
    assert _valid_triples_small(triples, nodes, allow_diagonal=False) == _valid_triples(
        triples, nodes, allow_diagonal=False
    )
    inner = 200  # calls per timed run: one call is a few microseconds

    def per_call(fn: Callable[[], object]) -> list[float]:
        return [t * 1000 / inner for t in timed(lambda: [fn() for _ in range(inner)], repeat)]

    return {
        "python": per_call(lambda: _valid_triples_small(triples, nodes, allow_diagonal=False)),
        "numpy": per_call(lambda: _valid_triples(triples, nodes, allow_diagonal=False)),
        "decode": per_call(lambda: problem_from_avro("maxcut", record)),
    }


def cell(xs: list[float]) -> str:
    return f"{pct(xs, 50):>7.1f} /{pct(xs, 95):>6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"validation of random graphs, {args.repeat} runs each, milliseconds (p50 / p95)")
    print(
        f"{'graph':<24} {'triples numpy':>15} {'element-wise':>15} {'ratio':>6}   "
        f"{'accept_request':>15} {'accept+decode':>15} {'ratio':>6}"
    )
    for nodes, edges in SIZES:
        t = measure(nodes, edges, args.repeat)
        loop_ratio = pct(t["loop"], 50) / pct(t["numpy"], 50)
        once_ratio = pct(t["twice"], 50) / pct(t["once"], 50)
        print(
            f"{f'{nodes} nodes / {edges} edges':<24} {cell(t['numpy'])} {cell(t['loop'])} "
            f"{loop_ratio:>5.1f}x   {cell(t['once'])} {cell(t['twice'])} {once_ratio:>5.1f}x"
        )
    print()
    print(
        f"small graphs (switch at {SMALL_TRIPLES} triples), {args.repeat} runs each,"
        " microseconds per call (p50 / p95)"
    )
    print(
        f"{'graph':<24} {'python loop':>15} {'numpy':>15} {'ratio':>6}   {'problem_from_avro':>17}"
    )
    for nodes, edges in SMALL_SIZES:
        t = measure_small(nodes, edges, args.repeat)
        ratio = pct(t["numpy"], 50) / pct(t["python"], 50)
        print(
            f"{f'{nodes} nodes / {edges} edges':<24} {cell(t['python'])} {cell(t['numpy'])} "
            f"{ratio:>5.2f}x   {cell(t['decode'])}"
        )


if __name__ == "__main__":
    main()
