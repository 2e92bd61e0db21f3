"""CUDA work that overlaps the device thread's, each kind on a stream of its own.

nvJPEG's hardware decoder writes its outputs without waiting for work queued on the stream it is
given (pytorch/vision#9606; torchcodec#1634 puts a host barrier before it). On the caller's stream,
the caching allocator may hand the decoder a block that queued kernels still read, since a block
freed on a stream is reused on that stream at once: the decoder then overwrites their inputs. On a
stream of its own the decoder gets only blocks that stream used, and its outputs are recorded on
the caller's stream (``record_stream``) so they are not reused until the caller's work on them has
run; the caller's stream waits for the side stream before it reads them. Decoding ahead (the
prepare thread) runs on another side stream for the same reason, beside the batch on the device.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, TypeVar

import torch

Result = TypeVar("Result")


@functools.cache
def _stream(device: torch.device, purpose: str) -> "torch.cuda.Stream":
    return torch.cuda.Stream(device)


def run_beside(device: torch.device, purpose: str, work: Callable[[], Result]) -> Result:
    """``work()`` on the ``purpose`` side stream of ``device``, its tensors handed to the caller's stream;
    elsewhere than on CUDA just ``work()``."""
    if device.type != "cuda":
        return work()
    caller = torch.cuda.current_stream(device)
    side = _stream(device, purpose)
    with torch.cuda.stream(side):
        result = work()
    for tensor in tensors_in(result):
        if tensor.device.type == "cuda":
            tensor.record_stream(caller)
    caller.wait_stream(side)
    return result


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in a result: itself, or inside dicts, lists, tuples and dataclasses."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = [getattr(value, field.name) for field in dataclasses.fields(value)]
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in tensors_in(item)]
    return []
