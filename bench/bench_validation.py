"""Benchmark of request validation on large problems: numpy checks vs element-wise Python.

The gateway validates a Solve request before it can start its local answer, and intake,
the orchestrator and the executors decode the same problems, so validation of a
20,000-edge graph is on the latency-critical path. This measures, side by side in one
run on random graphs of Gset size (generated here, seeded):

1. ``index_triples`` (vectorised, the default) against its element-wise pass (the one that
   names the invalid field; used only when the fast checks refuse the input);
2. ``accept_request`` (validates once and returns the problem model) against the former
   gateway path, ``accept`` followed by ``problem_from_avro`` of the normalized record.

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
from qbridge.problems._validation import _triples_elementwise, index_triples
from qbridge.problems.maxcut import MaxCut
from qbridge.validation import accept, accept_request

SIZES = ((800, 19_176), (2_000, 19_990), (5_000, 10_000))
"""(nodes, edges) of G1, G22 and G55-like graphs."""


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


if __name__ == "__main__":
    main()
