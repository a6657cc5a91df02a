"""Gset MaxCut graphs for the benchmarks (read from ../shared/bench-data/gset when present).

The graphs are public (Gset collection, rudy generator); they are not part of this
repository. Benchmarks that use them say so and skip them with a message when absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qbridge.problems.maxcut import MaxCut

GSET_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bench-data" / "gset"


@dataclass(frozen=True)
class GsetGraph:
    """One Gset graph and its best known cut (from the literature)."""

    name: str
    problem: MaxCut
    best_known: float


def load_gset(directory: Path = GSET_DIR) -> list[GsetGraph]:
    """Every graph of ``directory`` listed in its ``best_known.txt`` (empty if absent).

    File format: first line ``nodes edges``, then ``u v weight`` per edge, nodes 1-based.
    """
    index = directory / "best_known.txt"
    if not index.exists():
        return []
    graphs = []
    for line in index.read_text().splitlines():
        if not line.strip():
            continue
        name, value = line.split()
        path = directory / f"{name}.txt"
        nodes = int(path.read_text().split(maxsplit=1)[0])
        data = np.loadtxt(path, skiprows=1, ndmin=2)
        edges = zip(
            (data[:, 0].astype(int) - 1).tolist(),
            (data[:, 1].astype(int) - 1).tolist(),
            data[:, 2].tolist(),
            strict=True,
        )
        graphs.append(GsetGraph(name, MaxCut(nodes, tuple(edges)), float(value)))
    return sorted(graphs, key=lambda g: (g.problem.num_nodes, g.name))
