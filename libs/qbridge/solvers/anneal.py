"""Native heuristics for the QUBO family, on dwave-samplers (Apache-2.0, C++ core).

A :class:`BinaryModel` holds a binary quadratic model as numpy arrays (spin or 0/1
variables) and builds the ``dimod`` model from them in one call: building it from
Python dicts costs seconds on 5,000-node graphs, from arrays about a millisecond.

:func:`anneal_runs` is an anytime search that yields one result per native run,
sized to the time left:

1. a steepest-descent polish of the starting state, if one is given
   (``SteepestDescentSolver``);
2. a very short anneal (dwave-samplers' C++ simulated annealing) that measures the sweep
   rate, then a short one (a quarter of the time) for a good early answer;
3. one long anneal (half of the time left: one long schedule beats many short ones);
4. then cycles of *reheats* (a shorter anneal started from the incumbent at a lower
   starting temperature, which escapes its local optimum but keeps its structure;
   alternately a quarter and half way down the schedule) and fresh long anneals,
   until the time is used;
5. after every run, a *recombination* of the run with the incumbent
   (:func:`qbridge.solvers.recombine.recombine`, partition crossover: of each
   connected region where the two differ, the better version), polished by
   steepest descent.

Every anneal runs in short segments of its temperature schedule, so the deadline is
checked every ~0.1 s; a run that would end late is quenched (the rest of its schedule
compressed into the time left), so answers are in time even when the machine slows down.

Measured on the Gset graphs: reheats from the incumbent reached the best known cut of
G12 (800 nodes, +/-1 weights) in 0.2 s, where single anneals of up to 50,000 sweeps
stayed at 0.996; tabu search (``TabuSampler``) from the same incumbents improved less
per second on G2/G12/G24/G45 and took 7 s for a 2 s search at 5,000 nodes, so it is
not a member of the cycle. On G57 (5,000 nodes, +/-1 torus) a reheat alone rarely
beats the incumbent (it repairs some regions and spoils others); recombined, it keeps
only the repairs: with recombination and the colder half of the reheats, 0.9964 of
the best known cut at a 2 s-equivalent budget (11,400 sweeps planned, seeds 0-2)
against 0.9912 before, the other Gset graphs unchanged within noise (+/-0.0005).

Determinism: run ``k`` uses seed ``seed + k``; the length of each run follows from
the time and a sweep rate. With ``deterministic=True`` runs are planned on the given
budget and a fixed nominal rate (the clock only cuts the loop), so a replay on a
machine that keeps up gives the same answer; otherwise on the clock and the measured
rate (better use of a loaded machine's time, not reproducible).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata

import dimod
import numpy as np
import numpy.typing as npt
from dwave.samplers import SteepestDescentSolver
from dwave.samplers.sa.simulated_annealing import (  # type: ignore[import-not-found]
    simulated_annealing,  # compiled (Cython) module without type stubs
)

from qbridge.problems.qubo import Qubo
from qbridge.solvers.recombine import recombine

logger = logging.getLogger(__name__)

DWAVE_SAMPLERS_VERSION = metadata.version("dwave-samplers")

Bits = npt.NDArray[np.int8]
RATE_MIN_SWEEPS = 50
"""Only chunks of at least this many sweeps update the measured sweep rate."""


@dataclass(frozen=True)
class BinaryModel:
    """A binary quadratic model as arrays, minimized by the samplers.

    Energy is ``offset + linear @ v + sum_k values[k] v[rows[k]] v[cols[k]]`` over
    ``v in {0, 1}^n`` (``spin=False``) or ``v in {-1, +1}^n`` (``spin=True``). Spin ``s``
    stands for bit ``x = (1 - s) / 2``, the project's Ising convention.

    Attributes:
        spin: Variables are spins (else bits).
        linear: Linear coefficients, length ``n``.
        rows: First variable of each quadratic term.
        cols: Second variable of each quadratic term.
        values: Coefficient of each quadratic term.
        offset: Constant energy.
    """

    spin: bool
    linear: npt.NDArray[np.float64]
    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    offset: float = 0.0

    @property
    def num_variables(self) -> int:
        """Number of variables."""
        return int(self.linear.size)

    @property
    def num_terms(self) -> int:
        """Number of quadratic terms."""
        return int(self.values.size)

    @classmethod
    def from_qubo(cls, qubo: Qubo) -> BinaryModel:
        """The 0/1 model of a :class:`~qbridge.problems.qubo.Qubo`."""
        keys = np.array(list(qubo.quadratic), dtype=np.int64).reshape(-1, 2)
        return cls(
            spin=False,
            linear=np.asarray(qubo.linear, dtype=np.float64),
            rows=keys[:, 0],
            cols=keys[:, 1],
            values=np.fromiter(qubo.quadratic.values(), dtype=np.float64, count=len(keys)),
            offset=float(qubo.offset),
        )

    @classmethod
    def ising(
        cls,
        h: npt.ArrayLike,
        terms: npt.ArrayLike,
        offset: float = 0.0,
    ) -> BinaryModel:
        """A spin model from fields ``h`` and an ``(m, 3)`` array of ``(i, j, J_ij)`` rows."""
        t = np.asarray(terms, dtype=np.float64).reshape(-1, 3)
        return cls(
            spin=True,
            linear=np.asarray(h, dtype=np.float64),
            rows=t[:, 0].astype(np.int64),
            cols=t[:, 1].astype(np.int64),
            values=t[:, 2].copy(),
            offset=float(offset),
        )

    def bqm(self) -> dimod.BinaryQuadraticModel:
        """The ``dimod`` model (variables ``0..n-1``), built from the arrays."""
        return dimod.BinaryQuadraticModel.from_numpy_vectors(
            self.linear,
            (self.rows, self.cols, self.values),
            self.offset,
            dimod.SPIN if self.spin else dimod.BINARY,
        )

    def to_bits(self, sample: npt.ArrayLike) -> Bits:
        """0/1 assignment of a sample in the model's own variables."""
        v = np.asarray(sample, dtype=np.int8)
        return ((1 - v) // 2).astype(np.int8) if self.spin else v.astype(np.int8)

    def from_bits(self, bits: npt.ArrayLike) -> Bits:
        """A sample in the model's own variables from a 0/1 assignment."""
        b = np.asarray(bits, dtype=np.int8)
        return (1 - 2 * b).astype(np.int8) if self.spin else b

    def energy(self, bits: npt.ArrayLike) -> float:
        """Energy of a 0/1 assignment (vectorized; used to rank starting states)."""
        v = self.from_bits(bits).astype(np.float64)
        return float(
            self.offset + self.linear @ v + np.sum(self.values * v[self.rows] * v[self.cols])
        )


@dataclass(frozen=True)
class AnnealSettings:
    """How :func:`anneal_runs` spends its time.

    Attributes:
        first_share: Share of the time left given to the first (short) anneal.
        long_share: Share of the time left given to each fresh long anneal.
        reheat_share: Share of the time left given to each reheat.
        reheats_per_cycle: Reheats between two fresh long anneals.
        reheat_starts: Reheat ``k`` starts ``reheat_starts[k % len]`` along a fresh
            anneal's schedule (in log inverse temperature: 0 as hot as a fresh anneal,
            1 at its cold end).
        min_sweeps: Shortest run; a run that would be shorter is not started.
        max_sweeps: Longest run (longer schedules stopped paying on the Gset graphs).
        safety: A run (or the rest of it) is planned to take at most this share of the
            time left.
        segment_s: Length of one uninterrupted C++ call; the deadline is checked between
            calls.
        recombine: Merge each run into the incumbent by partition crossover
            (:func:`qbridge.solvers.recombine.recombine`), polished by steepest descent.
        deterministic: Plan runs with the nominal rate (reproducible) instead of the
            measured one.
        node_sweep_s: Nominal cost of one sweep per variable (seconds).
        term_sweep_s: Nominal cost of one sweep per quadratic term (seconds).
        sweep_s: Nominal fixed cost of one sweep (seconds).
    """

    first_share: float = 0.25
    long_share: float = 0.5
    reheat_share: float = 0.1
    reheats_per_cycle: int = 20
    reheat_starts: tuple[float, ...] = (0.25, 0.5)
    min_sweeps: int = 100
    max_sweeps: int = 200_000
    safety: float = 0.8
    segment_s: float = 0.1
    recombine: bool = True
    deterministic: bool = False
    node_sweep_s: float = 25e-9
    term_sweep_s: float = 2.5e-9
    sweep_s: float = 0.3e-6


@dataclass(frozen=True)
class AnnealRun:
    """What one native run produced.

    Attributes:
        member: ``steepest-descent``, ``anneal``, ``reheat`` or ``recombination``.
        bits: The run's best 0/1 assignment.
        energy: Its model energy.
        sweeps: Sweeps of the run (0 for steepest descent).
        seconds: Wall time of the run.
    """

    member: str
    bits: Bits
    energy: float
    sweeps: int
    seconds: float


def anneal_runs(
    model: BinaryModel,
    seed: int,
    deadline: float,
    start: Bits | None = None,
    settings: AnnealSettings | None = None,
    budget_s: float | None = None,
) -> Iterator[AnnealRun]:
    """Native runs, one result each, until ``deadline`` (``time.monotonic()``).

    Each run is executed in segments of about ``settings.segment_s`` (the C++ anneal
    cannot be interrupted inside a call); when the rest of a run no longer fits before
    the deadline, it is *quenched*: the rest of its schedule is compressed into the
    sweeps that fit, so every run ends cold, and in time, even when the machine slows
    down in the middle of it.

    Args:
        model: The model to minimize.
        seed: Seed of the first run; run ``k`` uses seeds from ``seed + k``.
        deadline: Monotonic time by which the last run must have ended.
        start: Optional 0/1 starting state (e.g. a greedy answer), polished first.
        settings: Schedule settings.
        budget_s: The time the caller gave (seconds). With ``settings.deterministic``
            the runs are planned on it and the nominal rate, not on the clock.

    Yields:
        One :class:`AnnealRun` per run; the caller may stop iterating at any time.
    """
    st = settings or AnnealSettings()
    annealer = _Annealer(model)
    nominal = 1.0 / (
        st.sweep_s + st.node_sweep_s * model.num_variables + st.term_sweep_s * 2 * model.num_terms
    )
    rate = [nominal]  # measured sweeps per second, updated by every segment
    hot, cold = default_beta_range(model)
    reheat_hot = [hot * (cold / hot) ** f for f in st.reheat_starts]
    reheats = 0
    run = 0
    planned_left = budget_s if st.deterministic and budget_s is not None else None
    incumbent: AnnealRun | None = None
    merge_s = 0.0  # cost of the last recombination: the next one must fit in time
    if start is not None:
        t = time.monotonic()
        bits = descend(model, start, seed)
        incumbent = AnnealRun("steepest-descent", bits, model.energy(bits), 0, time.monotonic() - t)
        yield incumbent
    while True:
        left = deadline - time.monotonic()
        share = 0.0
        if run == 0:
            member = "anneal"  # a short calibration run: measures the sweep rate
        elif run == 1:
            member, share = "anneal", st.first_share
        elif run == 2:
            member, share = "anneal", st.long_share
        else:
            cycle = (run - 3) % (st.reheats_per_cycle + 1)
            member, share = ("anneal", st.long_share)
            if cycle < st.reheats_per_cycle and incumbent is not None:
                member, share = ("reheat", st.reheat_share)
        if run == 0:
            sweeps = st.min_sweeps
        elif planned_left is not None:
            sweeps = min(st.max_sweeps, int(share * planned_left * nominal))
        else:
            sweeps = min(st.max_sweeps, int(share * left * rate[0]))
        if planned_left is not None:
            planned_left -= sweeps / nominal
        if st.safety * left * rate[0] < st.min_sweeps:
            return  # not even the shortest run fits
        sweeps = max(sweeps, st.min_sweeps)
        rng = np.random.default_rng(seed + run)
        if member == "reheat" and incumbent is not None:
            state = _spins(incumbent.bits)
            betas = np.geomspace(reheat_hot[reheats % len(reheat_hot)], cold, sweeps)
            reheats += 1
        else:
            state = _spins(rng.integers(0, 2, model.num_variables, dtype=np.int8))
            betas = np.geomspace(hot, cold, sweeps)
        seg_rate = nominal if planned_left is not None else rate[0]
        segment = max(st.min_sweeps, int(st.segment_s * seg_rate))
        t = time.monotonic()
        done, _complete = annealer.run(state, betas, segment, rng, deadline, st.safety, rate)
        run += 1
        bits = ((1 - state) // 2).astype(np.int8)
        result = AnnealRun(member, bits, model.energy(bits), done, time.monotonic() - t)
        previous = incumbent
        if incumbent is None or result.energy < incumbent.energy:
            incumbent = result
        yield result
        if st.recombine and previous is not None and deadline - time.monotonic() > 2 * merge_s:
            t = time.monotonic()
            child = descend(model, recombine(model, previous.bits, bits), seed + run)
            merge_s = time.monotonic() - t
            energy = model.energy(child)
            if energy < incumbent.energy:
                incumbent = AnnealRun("recombination", child, energy, 0, merge_s)
                yield incumbent


def _spins(bits: Bits) -> Bits:
    """Spins ``s = 1 - 2 x`` of 0/1 bits (the annealer's variables, whatever the model's)."""
    return (1 - 2 * np.asarray(bits, dtype=np.int8)).astype(np.int8)


class _Annealer:
    """The spin form of a model, annealed in segments by dwave-samplers' C++ routine.

    Calls the compiled ``simulated_annealing`` routine of dwave-samplers directly (the
    pinned 1.8.0): the public sampler rebuilds a ``SampleSet`` and parses initial
    states on every call (30 ms at 5,000 nodes), which segments cannot afford.
    """

    def __init__(self, model: BinaryModel) -> None:
        # Always spins s = 1 - 2 x, the project's convention (a spin model already is).
        if model.spin:
            h, j = model.linear, model.values
        else:
            # x = (1 - s) / 2: l x = l/2 - l/2 s; q x_i x_j = q/4 (1 - s_i - s_j + s_i s_j).
            h = -model.linear / 2
            np.add.at(h, model.rows, -model.values / 4)
            np.add.at(h, model.cols, -model.values / 4)
            j = model.values / 4
        self.h = h.tolist()
        self.rows = model.rows.tolist()
        self.cols = model.cols.tolist()
        self.j = j.tolist()

    def run(
        self,
        state: Bits,
        betas: npt.NDArray[np.float64],
        segment: int,
        rng: np.random.Generator,
        deadline: float,
        safety: float,
        rate: list[float],
    ) -> tuple[int, bool]:
        """Anneal ``state`` (spins, in place) along ``betas``; returns (sweeps, complete).

        ``rate[0]`` (sweeps per second) is updated after each segment. When the rest
        of the schedule does not fit before ``deadline`` it is compressed into what
        fits (``complete`` is then False).
        """
        states = np.ascontiguousarray(state.reshape(1, -1), dtype=np.int8)
        i, done = 0, 0
        complete = True
        while i < betas.size:
            left = deadline - time.monotonic()
            rest = betas.size - i
            fits = int(min(safety * left * rate[0], rest + 1))
            if rest > fits:
                complete = False
                if fits < 2:
                    break
                chunk = np.geomspace(betas[i], betas[-1], fits)
                i = betas.size
            else:
                chunk = betas[i : i + segment]
                i += chunk.size
            t = time.monotonic()
            simulated_annealing(
                1,
                self.h,
                self.rows,
                self.cols,
                self.j,
                1,
                chunk.tolist(),
                int(rng.integers(1, 2**31)),
                states,
                False,
                "Metropolis",
                None,
            )
            elapsed = time.monotonic() - t
            done += chunk.size
            if elapsed > 0 and chunk.size >= RATE_MIN_SWEEPS:
                rate[0] = chunk.size / elapsed  # short chunks measure call overhead, not sweeps
        state[:] = states[0]
        return done, complete


SMALL_DESCENT_MAX = 200
"""Up to this many variables :func:`descend` runs in numpy (no sampler call overhead)."""


def descend(model: BinaryModel, start: Bits, seed: int = 0) -> Bits:
    """Steepest 1-flip descent from a 0/1 state.

    ``SteepestDescentSolver`` (C++) on large models; a dense numpy loop on small ones,
    where the sampler's per-call overhead (about a millisecond) would dominate.
    """
    if model.num_variables <= SMALL_DESCENT_MAX:
        return _descend_dense(model, start)
    ss = SteepestDescentSolver().sample(
        model.bqm(),
        initial_states=(model.from_bits(start)[None, :], list(range(model.num_variables))),
        seed=seed,
    )
    return _result("steepest-descent", model, ss, 0, 0.0).bits


def _descend_dense(model: BinaryModel, start: Bits) -> Bits:
    n = model.num_variables
    # The model in bits: E = const + lin @ x + x @ W @ x / 2 with W symmetric, zero diagonal.
    if model.spin:
        # s = 1 - 2x: l s -> -2 l x; q s_i s_j -> -2 q x_i - 2 q x_j + 4 q x_i x_j.
        lin = -2.0 * model.linear
        np.add.at(lin, model.rows, -2.0 * model.values)
        np.add.at(lin, model.cols, -2.0 * model.values)
        quad = 4.0 * model.values
    else:
        lin, quad = model.linear.copy(), model.values
    w = np.zeros((n, n))
    np.add.at(w, (model.rows, model.cols), quad)
    w = w + w.T
    x = np.asarray(start, dtype=np.float64).copy()
    h = lin + w @ x
    for _ in range(10 * n + 100):
        gains = (1.0 - 2.0 * x) * h
        i = int(np.argmin(gains))
        if gains[i] >= -1e-12:
            break
        h += (1.0 - 2.0 * x[i]) * w[i]
        x[i] = 1.0 - x[i]
    return x.astype(np.int8)


def default_beta_range(model: BinaryModel, excitation_rate: float = 0.01) -> tuple[float, float]:
    """dwave-samplers' default inverse-temperature range, computed with numpy.

    The sampler computes it in a Python loop on every call (0.2 s at 5,000 nodes);
    the rule is the same: hot enough that the largest possible move is accepted half
    the time, cold enough that the smallest one is excited with probability
    ``excitation_rate`` summed over the spins that have it.
    """
    n = model.num_variables
    if model.spin:
        h, j = np.abs(model.linear), np.abs(model.values)
    else:
        # Spin form of a 0/1 model: h_i = l_i / 2 + sum_j q_ij / 4, J_ij = q_ij / 4.
        hs = model.linear / 2
        np.add.at(hs, model.rows, model.values / 4)
        np.add.at(hs, model.cols, model.values / 4)
        h, j = np.abs(hs), np.abs(model.values) / 4
    total = h.copy()
    np.add.at(total, model.rows, j)
    np.add.at(total, model.cols, j)
    smallest = np.where(h > 0, h, np.inf)
    nz = j > 0
    np.minimum.at(smallest, model.rows[nz], j[nz])
    np.minimum.at(smallest, model.cols[nz], j[nz])
    smallest = smallest[np.isfinite(smallest)]
    if n == 0 or smallest.size == 0:
        return 0.1, 1.0  # no bias at all: every state has the same energy
    max_field = float(total.max())
    hot = math.log(2) / (2 * max_field)
    min_field = float(smallest.min())
    count = int(np.sum(smallest == min_field))
    cold = math.log(count / excitation_rate) / (2 * min_field)
    return hot, max(hot, cold)


def _result(
    member: str, model: BinaryModel, ss: dimod.SampleSet, sweeps: int, seconds: float
) -> AnnealRun:
    best = int(np.argmin(ss.record.energy))
    bits = model.to_bits(ss.record.sample[best])
    return AnnealRun(member, bits, float(ss.record.energy[best]), sweeps, seconds)
