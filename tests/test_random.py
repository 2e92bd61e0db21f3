"""The sampler: replayable by (seed, key, slot, draw), well distributed, independent across slots."""

import numpy as np
import pytest
import torch
from scipy import stats

from augserve.random import Draw, SampleRng


class D(Draw):
    A = 0
    B = 1
    C = 2


def test_same_key_same_numbers_in_any_batch():
    keys = torch.tensor([7, -3, 2**40 + 5, 0])
    full = SampleRng(11, keys).fork(3).uniform(D.C, n=5)
    for order in ([2, 0], [3], [1, 2, 3, 0]):
        part = SampleRng(11, keys[order]).fork(3).uniform(D.C, n=5)
        assert torch.equal(part, full[order])


def test_seed_key_slot_and_draw_all_change_the_stream():
    base = SampleRng(1, torch.arange(1000)).fork(0).bits(D.A)
    assert not torch.equal(base, SampleRng(2, torch.arange(1000)).fork(0).bits(D.A))
    assert not torch.equal(base, SampleRng(1, torch.arange(1, 1001)).fork(0).bits(D.A))
    assert not torch.equal(base, SampleRng(1, torch.arange(1000)).fork(1).bits(D.A))
    assert not torch.equal(base, SampleRng(1, torch.arange(1000)).fork(0).bits(D.B))


def test_uniform_is_uniform_and_uncorrelated_between_draws_and_keys():
    rng = SampleRng(5, torch.arange(50_000)).fork(9)
    a, b = rng.uniform(D.A).numpy(), rng.uniform(D.B).numpy()
    assert stats.kstest(a, "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.02
    assert a.min() >= 0.0 and a.max() < 1.0


def test_index_normal_permutation():
    rng = SampleRng(0, torch.arange(60_000))
    ints = rng.index(D.A, 14)
    counts = torch.bincount(ints, minlength=14).numpy()
    assert ints.min() >= 0 and ints.max() < 14
    assert stats.chisquare(counts).pvalue > 1e-3
    z = rng.normal(D.B, 2.0, 3.0).numpy()
    assert abs(z.mean() - 2.0) < 0.05 and abs(z.std() - 3.0) < 0.05
    perm = rng.permutation(D.C, 4)
    assert torch.equal(perm.sort(dim=1).values, torch.arange(4).expand(60_000, 4))
    assert len({tuple(p) for p in perm[:2000].tolist()}) == 24


def test_bernoulli_extremes():
    rng = SampleRng(0, torch.arange(1000))
    assert rng.bernoulli(D.A, 1.0).all() and not rng.bernoulli(D.B, 0.0).any()


def test_draws_are_named_and_each_is_drawn_once_per_stream():
    rng = SampleRng(0, torch.arange(8)).fork(1)
    with pytest.raises(TypeError, match="draws are named"):
        rng.uniform(0)
    rng.uniform(D.A)
    with pytest.raises(RuntimeError, match="D.A asked for twice"):
        rng.bernoulli(D.A, 0.5)  # would repeat the values of the first
    rng.fork(2).uniform(D.A)  # a child stream, and a subset of samples, start afresh
    rng.select(torch.tensor([0, 3])).uniform(D.A)


def test_a_step_with_two_draws_on_one_number_is_refused():
    from augserve.steps.base import Step, register

    class Clash(Step):
        op = "clash_for_test"

        class Draw(Draw):
            FIRST = 0
            SECOND = 0

        def __call__(self, x, rng):
            return x, {}

    with pytest.raises(ValueError, match="duplicate values"):
        register(Clash)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True, "3"])
def test_bad_seed_is_refused(seed):
    with pytest.raises(ValueError, match="seed"):
        SampleRng(seed, torch.arange(3))


def test_pixel_noise_is_keyed_by_sample():
    keys = torch.tensor([4, 9])
    full = SampleRng(0, keys).pixel_uniform(D.A, (3, 8, 8))
    alone = SampleRng(0, keys[1:]).pixel_uniform(D.A, (3, 8, 8))
    assert torch.equal(full[1:], alone)
    assert not torch.equal(full[0], full[1])


def test_the_cpu_finalizer_gives_the_bits_of_the_device_one():
    from augserve.random import _fmix32, _fmix32_torch, _mulmod32, _mulmod32_torch

    words = torch.cat([torch.randint(0, 2**32, (4096,), generator=torch.Generator().manual_seed(0)),
                       torch.tensor([0, 1, 2**31, 2**32 - 1])])
    assert torch.equal(_fmix32(words), _fmix32_torch(words))
    strided = words[:4096].view(64, -1)[:, ::3]  # not contiguous
    assert torch.equal(_fmix32(strided), _fmix32_torch(strided))
    assert torch.equal(_mulmod32(words, 0x9E3779B9), _mulmod32_torch(words, 0x9E3779B9))
