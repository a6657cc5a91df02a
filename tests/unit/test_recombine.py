"""Partition crossover: never worse than either parent, keeps agreements, combines repairs."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from qbridge.problems import MaxCut
from qbridge.solvers.anneal import AnnealSettings, BinaryModel, anneal_runs
from qbridge.solvers.recombine import recombine
from qbridge.solvers.strategy import strategy_for
from tests.unit.test_problems import rand_ising, rand_qubo


def _models(seed: int) -> list[BinaryModel]:
    rng = random.Random(f"recombine-{seed}")
    models = []
    for problem in (rand_qubo(rng, 10), rand_ising(rng, 10)):
        build = strategy_for(problem).model
        assert build is not None
        models.append(build(problem))
    edges = [(i, j, rng.choice([-1.0, 1.0, 2.5])) for i, j in itertools.combinations(range(10), 2)]
    models.append(BinaryModel.ising(np.zeros(10), [e for e in edges if rng.random() < 0.3]))
    return models


@pytest.mark.parametrize("seed", range(5))
def test_child_is_no_worse_than_either_parent_and_keeps_their_agreements(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for model in _models(seed):
        for _ in range(20):
            a = rng.integers(0, 2, model.num_variables, dtype=np.int8)
            b = rng.integers(0, 2, model.num_variables, dtype=np.int8)
            child = recombine(model, a, b)
            assert child.dtype == np.int8 and set(np.unique(child)) <= {0, 1}
            assert model.energy(child) <= min(model.energy(a), model.energy(b)) + 1e-9
            # Every variable comes from a parent (the mirror of b for field-free spins).
            mirror = model.spin and not model.linear.any()
            assert np.all((child == a) | (child == b) | (mirror & (child == 1 - b)))


def test_child_is_the_best_mix_of_the_differing_regions() -> None:
    # A ring of 12 with +/-1 couplings: a and b each get one region right; the child
    # must pick each region's better version, i.e. match the brute-force best of all
    # mixes that take whole regions (regions found by hand: {1, 2} and {7, 8}).
    n = 12
    rng = np.random.default_rng(3)
    couplings = rng.choice([-1.0, 1.0], n)
    model = BinaryModel.ising(np.zeros(n), [(i, (i + 1) % n, couplings[i]) for i in range(n)])
    a = rng.integers(0, 2, n, dtype=np.int8)
    b = a.copy()
    b[[1, 2, 7, 8]] ^= 1
    mixes = []
    for take_first, take_second in itertools.product((False, True), repeat=2):
        m = a.copy()
        if take_first:
            m[[1, 2]] = b[[1, 2]]
        if take_second:
            m[[7, 8]] = b[[7, 8]]
        mixes.append(model.energy(m))
    assert model.energy(recombine(model, a, b)) == pytest.approx(min(mixes))


def test_maxcut_mirror_image_is_the_same_cut() -> None:
    problem = MaxCut(4, ((0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0), (3, 0, 1.0)))
    model = strategy_for(problem).model
    assert model is not None
    m = model(problem)
    a = np.array([0, 1, 0, 1], dtype=np.int8)
    child = recombine(m, a, 1 - a)
    assert problem.evaluate(tuple(child.tolist())).objective == 4.0
    assert np.array_equal(recombine(m, a, a), a)


def test_anneal_runs_report_recombinations_with_their_true_energy() -> None:
    rng = np.random.default_rng(7)
    n = 400
    i, j = np.triu_indices(n, 1)
    keep = rng.random(i.size) < 4.0 / n
    terms = np.column_stack([i[keep], j[keep], rng.choice([-1.0, 1.0], int(keep.sum()))])
    model = BinaryModel.ising(np.zeros(n), terms)
    settings = AnnealSettings(deterministic=True)

    def runs() -> list[tuple[str, float, tuple[int, ...]]]:
        out = []
        for k, r in enumerate(anneal_runs(model, 1, float("inf"), None, settings, 0.3)):
            assert r.energy == pytest.approx(model.energy(r.bits))
            out.append((r.member, r.energy, tuple(r.bits.tolist())))
            if k >= 40:
                break
        return out

    first = runs()
    members = {m for m, _, _ in first}
    assert {"anneal", "reheat"} <= members
    # Recombinations only appear when they beat the incumbent: best so far decreases.
    best = [min(e for _, e, _ in first[: k + 1]) for k in range(len(first))]
    for (member, energy, _), before in zip(first[1:], best, strict=False):
        if member == "recombination":
            assert energy < before
    assert first == runs()  # deterministic for a seed
