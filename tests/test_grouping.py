"""Per-sample kernels by group: every sample gets its own group's kernel, whatever the dtype or memory layout."""

import pytest
import torch

from augserve.ops import grouping

GROUP = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1, 0])
KERNELS = {1: lambda samples, index: samples + 1, 2: lambda samples, index: samples * 2}


def _expected(x):
    out = x.clone()
    out[GROUP == 1] += 1
    out[GROUP == 2] *= 2
    return out


def _at_offset(x, offset):
    """``x``'s values in a buffer that starts ``offset`` elements into its storage (misaligned for wide words)."""
    buffer = torch.empty(offset + x.numel(), dtype=x.dtype)
    return buffer[offset:].view(x.shape).copy_(x)


@pytest.mark.parametrize("shape, dtype", [
    ((9, 3, 8, 8), torch.uint8),  # rows of whole int64 words
    ((9, 3, 37, 53), torch.uint8),  # odd rows: byte by byte
    ((9, 1, 3, 6), torch.uint8),  # int16 words
    ((9, 3, 7, 7), torch.float32),
    ((9, 4), torch.float64),
])
@pytest.mark.parametrize("offset", [0, 1, 2])
@pytest.mark.parametrize("in_place", [False, True])
def test_each_sample_gets_its_groups_kernel(shape, dtype, offset, in_place):
    x = _at_offset((torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 100).to(dtype), offset)
    expected = _expected(x)
    before = x.clone()
    out = grouping.apply_by_group(x, GROUP, KERNELS, in_place=in_place)
    assert torch.equal(out, expected)
    assert in_place or torch.equal(x, before)


def test_channels_last_batches_keep_their_values():
    x = torch.randint(0, 256, (9, 3, 8, 8), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    assert torch.equal(grouping.apply_by_group(x, GROUP, KERNELS), _expected(x.contiguous()))
