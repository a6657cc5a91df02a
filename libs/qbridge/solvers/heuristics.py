"""Fast, seeded heuristics: warm starts for CP-SAT and a last-resort answer.

Everything here is deterministic for a given seed: loops are bounded by
iteration counts, and the optional deadline is only a safety net (a run cut by
its deadline returns the best found so far, which then depends on speed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from qbridge.problems.knapsack import Knapsack
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.qubo import Qubo
from qbridge.problems.scheduling import JobShop

logger = logging.getLogger(__name__)

DENSE_MAX_VARIABLES = 2048
"""Up to this size the coupling matrix is dense (fast rows); above it, CSR."""

Bits = npt.NDArray[np.int8]


@dataclass(frozen=True)
class HeuristicResult:
    """Distinct local optima found, best first.

    Attributes:
        solutions: ``(assignment, score)`` pairs, best first, where the score is
            the quantity the heuristic minimized (QUBO energy, negated value...).
        iterations: Moves evaluated.
    """

    solutions: tuple[tuple[tuple[int, ...], float], ...]
    iterations: int


class _Deadline:
    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


class _Pool:
    """Keeps the ``size`` best distinct solutions."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.items: dict[tuple[int, ...], float] = {}

    def add(self, x: Bits | tuple[int, ...], score: float) -> None:
        key = tuple(int(b) for b in x)
        if key in self.items:
            return
        self.items[key] = score
        if len(self.items) > self.size:
            worst = max(self.items.items(), key=lambda kv: (kv[1], kv[0]))[0]
            del self.items[worst]

    def best_first(self) -> tuple[tuple[tuple[int, ...], float], ...]:
        return tuple(sorted(self.items.items(), key=lambda kv: (kv[1], kv[0])))


class _QuboMatrix:
    """Symmetric coupling matrix ``W`` (``W_ij = W_ji = q_ij``) with fast row access."""

    def __init__(self, qubo: Qubo) -> None:
        n = qubo.num_variables
        self.linear = np.asarray(qubo.linear, dtype=np.float64)
        rows = [i for i, _ in qubo.quadratic] + [j for _, j in qubo.quadratic]
        cols = [j for _, j in qubo.quadratic] + [i for i, _ in qubo.quadratic]
        vals = list(qubo.quadratic.values()) * 2
        csr = sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float64)
        self.dense: npt.NDArray[np.float64] | None = (
            csr.toarray() if n <= DENSE_MAX_VARIABLES else None
        )
        self.csr = csr

    def field(self, x: Bits) -> npt.NDArray[np.float64]:
        """``h = linear + W x``; flipping ``i`` changes the energy by ``(1 - 2 x_i) h_i``."""
        xf = x.astype(np.float64)
        return self.linear + (self.dense @ xf if self.dense is not None else self.csr @ xf)

    def energy(self, x: Bits, offset: float) -> float:
        """Energy from scratch (the searches then track it incrementally)."""
        xf = x.astype(np.float64)
        wx = self.dense @ xf if self.dense is not None else self.csr @ xf
        return float(offset + self.linear @ xf + 0.5 * xf @ wx)

    def add_row(self, h: npt.NDArray[np.float64], i: int, scale: float) -> None:
        if self.dense is not None:
            h += scale * self.dense[i]
        else:
            start, end = self.csr.indptr[i], self.csr.indptr[i + 1]
            h[self.csr.indices[start:end]] += scale * self.csr.data[start:end]


def _descend(
    w: _QuboMatrix, x: Bits, h: npt.NDArray[np.float64], energy: float, max_moves: int
) -> tuple[float, int]:
    """Steepest 1-flip descent in place; returns the final energy and moves made."""
    moves = 0
    while moves < max_moves:
        gains = (1 - 2 * x) * h
        i = int(np.argmin(gains))
        if gains[i] >= -1e-12:
            break
        energy += float(gains[i])
        d = 1 - 2 * int(x[i])
        x[i] = 1 - x[i]
        w.add_row(h, i, float(d))
        moves += 1
    return energy, moves


def qubo_local_search(
    qubo: Qubo,
    *,
    seed: int = 0,
    restarts: int = 4,
    tabu_iterations: int | None = None,
    pool_size: int = 5,
    deadline: float | None = None,
) -> HeuristicResult:
    """Greedy start + steepest 1-flip descent, random restarts, then a 1-flip tabu search.

    Args:
        qubo: The QUBO to minimize.
        seed: Seed of the restarts and of the tabu tenure jitter.
        restarts: Random restarts after the all-zero start.
        tabu_iterations: Tabu moves from the best descent result (default ``50 n``,
            at least 1000); 0 disables the tabu phase.
        pool_size: Distinct solutions to keep.
        deadline: ``time.monotonic()`` value after which to stop (safety net).

    Returns:
        The best distinct solutions with their QUBO energies.
    """
    n = qubo.num_variables
    rng = np.random.default_rng(seed)
    stop = _Deadline(deadline)
    w = _QuboMatrix(qubo)
    pool = _Pool(pool_size)
    max_moves = 10 * n + 100
    iterations = 0
    best_x: Bits | None = None
    best_e = float("inf")
    starts: list[Bits] = [np.zeros(n, dtype=np.int8)]
    starts += [rng.integers(0, 2, n).astype(np.int8) for _ in range(restarts)]
    for x in starts:
        if stop.passed() and best_x is not None:
            break
        h = w.field(x)
        e, moves = _descend(w, x, h, w.energy(x, qubo.offset), max_moves)
        iterations += moves
        pool.add(x, e)
        if e < best_e:
            best_e, best_x = e, x.copy()
    assert best_x is not None
    iters = max(1000, 50 * n) if tabu_iterations is None else tabu_iterations
    if iters > 0 and n > 1:
        iterations += _tabu(w, best_x, best_e, iters, rng, stop, pool)
    return HeuristicResult(pool.best_first(), iterations)


def _tabu(
    w: _QuboMatrix,
    x0: Bits,
    e0: float,
    iterations: int,
    rng: np.random.Generator,
    stop: _Deadline,
    pool: _Pool,
) -> int:
    """1-flip tabu search with aspiration; adds improving solutions to ``pool``."""
    n = x0.size
    x = x0.copy()
    h = w.field(x)
    e = e0
    best_e = e0
    tabu_until = np.zeros(n, dtype=np.int64)
    base_tenure = max(1, min(20, n // 4))
    done = 0
    for it in range(1, iterations + 1):
        if it % 256 == 0 and stop.passed():
            break
        gains = (1 - 2 * x) * h
        allowed = (tabu_until < it) | (e + gains < best_e - 1e-12)
        if not allowed.any():
            allowed[:] = True
        masked = np.where(allowed, gains, np.inf)
        i = int(np.argmin(masked))
        e += float(gains[i])
        d = 1 - 2 * int(x[i])
        x[i] = 1 - x[i]
        w.add_row(h, i, float(d))
        tabu_until[i] = it + base_tenure + int(rng.integers(0, 5))
        done = it
        if e < best_e - 1e-12:
            best_e = e
            pool.add(x, e)
    return done


def knapsack_greedy(problem: Knapsack, *, pool_size: int = 5) -> HeuristicResult:
    """Value-density greedy, best single item, and 1-swap improvement.

    Scores are negated values (lower is better), every solution is feasible.
    """
    n = problem.num_variables
    v = np.asarray(problem.values)
    wt = np.asarray(problem.weights, dtype=np.int64)
    cap = problem.capacity
    pool = _Pool(pool_size)
    order = sorted(range(n), key=lambda i: (-v[i] / wt[i], i))
    x = np.zeros(n, dtype=np.int8)
    load = 0
    for i in order:
        if load + wt[i] <= cap:
            x[i] = 1
            load += int(wt[i])
    pool.add(x, -float(v @ x))
    fits = [i for i in range(n) if wt[i] <= cap]
    if fits:
        single = np.zeros(n, dtype=np.int8)
        single[max(fits, key=lambda i: (v[i], -i))] = 1
        pool.add(single, -float(v @ single))
    iterations = 0
    improved = True
    # 1-swap (drop one, add one that fits) until no improvement; O(n^2) per pass.
    while improved and iterations < 50:
        improved = False
        iterations += 1
        inside = np.flatnonzero(x)
        outside = np.flatnonzero(x == 0)
        best = (0.0, -1, -1)
        for i_ in inside:
            i = int(i_)
            room = cap - load + int(wt[i])
            ok = outside[wt[outside] <= room]
            if ok.size == 0:
                continue
            j = int(ok[np.argmax(v[ok])])
            gain = float(v[j] - v[i])
            if gain > best[0] + 1e-12:
                best = (gain, i, j)
        if best[1] >= 0:
            _, i, j = best
            x[i], x[j] = 0, 1
            load += int(wt[j] - wt[i])
            for k in np.flatnonzero(x == 0):
                if load + wt[k] <= cap:
                    x[k] = 1
                    load += int(wt[k])
            pool.add(x, -float(v @ x))
            improved = True
    return HeuristicResult(pool.best_first(), iterations)


def portfolio_greedy(
    problem: Portfolio, *, pool_size: int = 5, max_passes: int = 100
) -> HeuristicResult:
    """Greedy cardinality-``k`` construction, then best-improvement 1-in-1-out swaps.

    Scores are the (feasible) objective values.
    """
    pool = _Pool(pool_size)
    passes = _portfolio_search(
        problem, np.zeros(problem.num_variables, dtype=np.int8), pool, max_passes
    )
    return HeuristicResult(pool.best_first(), passes)


def portfolio_improve(
    problem: Portfolio, start: npt.ArrayLike, *, max_passes: int = 100
) -> tuple[int, ...]:
    """Repair ``start`` to exactly ``budget`` assets by marginal cost, then swap-descend.

    Assets are added (cheapest marginal cost first) or dropped (most expensive
    first) until the cardinality holds; best-improvement swaps follow.

    Returns:
        A feasible selection no worse than the repaired start.
    """
    pool = _Pool(1)
    _portfolio_search(problem, np.asarray(start, dtype=np.int8).copy(), pool, max_passes)
    return pool.best_first()[0][0]


def _portfolio_search(problem: Portfolio, x: Bits, pool: _Pool, max_passes: int) -> int:
    """Fix the cardinality of ``x`` greedily, then best-improvement swaps; returns passes."""
    n = problem.num_variables
    k = problem.budget
    mu = np.asarray(problem.expected_returns)
    s = problem.risk_aversion * problem.covariance_matrix()

    def objective(x: Bits) -> float:
        xf = x.astype(np.float64)
        return float(xf @ s @ xf - mu @ xf)

    while int(x.sum()) > k:
        # Saving of dropping i (x_i = 1): 2 (S x)_i - s_ii - mu_i; drop the largest.
        marg = 2.0 * (s @ x) - np.diag(s) - mu
        marg[x == 0] = -np.inf
        x[int(np.argmax(marg))] = 0
    while int(x.sum()) < k:
        # Marginal cost of adding i: s_ii + 2 (S x)_i - mu_i.
        marg = np.diag(s) + 2.0 * (s @ x) - mu
        marg[x == 1] = np.inf
        x[int(np.argmin(marg))] = 1
    cur = objective(x)
    pool.add(x, cur)
    passes = 0
    while passes < max_passes and 0 < k < n:
        passes += 1
        sx = s @ x
        inside = np.flatnonzero(x)
        outside = np.flatnonzero(x == 0)
        # Delta of swapping i out, j in: exact for a quadratic form.
        d_out = -np.diag(s)[inside] - 2.0 * (sx[inside] - np.diag(s)[inside]) + mu[inside]
        d_in = np.diag(s)[outside] + 2.0 * sx[outside] - mu[outside]
        delta = d_out[:, None] + d_in[None, :] - 2.0 * s[np.ix_(inside, outside)]
        a, b = np.unravel_index(int(np.argmin(delta)), delta.shape)
        if delta[a, b] >= -1e-12:
            break
        x[inside[a]], x[outside[b]] = 0, 1
        cur = objective(x)
        pool.add(x, cur)
    return passes


def jobshop_dispatch(problem: JobShop) -> HeuristicResult:
    """Greedy list scheduling: repeatedly start the operation that can start earliest.

    Ties go to the job with the most remaining work, then the lowest job index.
    The schedule is feasible by construction; its score is the makespan.
    """
    jobs = problem.jobs
    next_op = [0] * len(jobs)
    job_ready = [0] * len(jobs)
    machine_ready: dict[int, int] = {}
    remaining = [sum(op.duration for op in job) for job in jobs]
    offsets = np.cumsum([0] + [len(job) for job in jobs])
    starts = [0] * problem.num_variables
    for _ in range(problem.num_variables):
        best: tuple[int, int, int] | None = None
        for j, job in enumerate(jobs):
            if next_op[j] >= len(job):
                continue
            op = job[next_op[j]]
            start = max(job_ready[j], machine_ready.get(op.machine, 0))
            key = (start, -remaining[j], j)
            if best is None or key < best:
                best = key
        assert best is not None
        start, _, j = best
        op = jobs[j][next_op[j]]
        starts[int(offsets[j]) + next_op[j]] = start
        job_ready[j] = machine_ready[op.machine] = start + op.duration
        remaining[j] -= op.duration
        next_op[j] += 1
    makespan = max(job_ready)
    return HeuristicResult(((tuple(starts), float(makespan)),), problem.num_variables)
