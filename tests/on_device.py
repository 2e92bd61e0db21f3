"""A stand-in accelerator on a CPU machine: tensors that hold CPU values and say they live on ``meta``.

CUDA refuses a CPU tensor of one or more dimensions mixed into the math of its tensors, and
``.numpy()`` of a device tensor; the meta device refuses the same but holds no values, so code
that branches on values (grouping samples by the op they drew, ``.item()``) cannot run there.
``OnDevice`` runs everything on the CPU values and records each op that mixed host tensors into
device math, as CUDA would have refused it, so a whole pipeline can be checked in CI.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")
_OPEN: list["OnDevice"] = []
# Ops CUDA gives CPU operands on purpose: index tensors and device-to-host/host-to-device copies.
ALLOWED_HOST_OPERANDS = {"aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default",
                         "aten._to_copy.default", "aten.copy_.default", "aten.lift_fresh.default"}


class DeviceTensor(torch.Tensor):
    """CPU values behind a tensor whose ``device`` is ``meta``."""

    @staticmethod
    def __new__(cls, values: torch.Tensor):
        tensor = torch.Tensor._make_wrapper_subclass(cls, values.shape, strides=values.stride(),
                                                    storage_offset=values.storage_offset(), dtype=values.dtype,
                                                    device=DEVICE, requires_grad=False)
        tensor.values = values
        return tensor

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        """Ops on other threads (dispatch modes are per thread): handled by the mode that is open."""
        if not _OPEN:
            raise AssertionError(f"{func} reached a DeviceTensor outside OnDevice")
        return _OPEN[-1].handle(func, args, kwargs)

    def __repr__(self):
        return f"DeviceTensor({self.values!r})"


class _Factories(TorchFunctionMode):
    """``torch.tensor(..., device=meta)`` and other factories asked for the device give device tensors
    (``torch.tensor`` copies in C++, below the dispatcher: only here can it be seen)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.tolist and isinstance(args[0], DeviceTensor):
            return args[0].values.tolist()  # CUDA copies to the host for it
        if func is torch.Tensor.new_tensor and isinstance(args[0], DeviceTensor):
            return DeviceTensor(args[0].values.new_tensor(*args[1:], **kwargs))  # copied below the dispatcher too
        if func is torch.Tensor.numpy and isinstance(args[0], DeviceTensor):
            raise TypeError("can't convert a device tensor to numpy: copy it to the host first (.cpu())")
        if _device_of(kwargs.get("device")) == DEVICE and not isinstance(func, type(torch.Tensor.to)):
            return tree_map(_wrap, func(*args, **{**kwargs, "device": torch.device("cpu")}))
        return func(*args, **kwargs)


class OnDevice(TorchDispatchMode):
    """Inside it, ``to_device(x)`` gives device tensors; factories asked for ``meta`` make them too.
    ``mixed`` lists the ops that took a host tensor (dim >= 1) beside device tensors."""

    def __init__(self):
        super().__init__()
        self.mixed: list[str] = []
        self._factories = _Factories()

    def __enter__(self):
        _forget_device_tensors()
        _OPEN.append(self)
        self._factories.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        _OPEN.remove(self)
        _forget_device_tensors()
        return self._factories.__exit__(*exc)


    @staticmethod
    def to_device(x: torch.Tensor) -> DeviceTensor:
        return DeviceTensor(x)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.handle(func, args, kwargs)

    def handle(self, func, args, kwargs):
        kwargs = kwargs or {}
        name = str(func)
        leaves = [v for v in _leaves((args, kwargs)) if isinstance(v, torch.Tensor)]
        on_device = any(isinstance(v, DeviceTensor) for v in leaves)
        asked_device = _device_of(kwargs.get("device"))
        host = [v for v in leaves if not isinstance(v, DeviceTensor) and v.dim() > 0]
        if on_device and host and name not in ALLOWED_HOST_OPERANDS:
            self.mixed.append(f"{name} with host operands of shapes {[tuple(v.shape) for v in host]}")
        if name == "aten._to_copy.default" and asked_device is not None:
            source = args[0]
            values = source.values if isinstance(source, DeviceTensor) else source
            kwargs = {**kwargs, "device": torch.device("cpu")}
            out = func(values, *args[1:], **kwargs)
            return DeviceTensor(out) if asked_device == DEVICE else out
        if asked_device == DEVICE:
            kwargs = {**kwargs, "device": torch.device("cpu")}
        unwrapped_args, unwrapped_kwargs = tree_map(_unwrap, (args, kwargs))
        out = func(*unwrapped_args, **unwrapped_kwargs)
        if not (on_device or asked_device == DEVICE):
            return out
        return tree_map(lambda v: _rewrap(v, args, unwrapped_args), out)


def _leaves(tree):
    found = []
    tree_map(lambda v: found.append(v), tree)
    return found


def _device_of(value):
    return None if value is None else torch.device(value)


def _wrap(value):
    return DeviceTensor(value) if isinstance(value, torch.Tensor) else value


def _unwrap(value):
    return value.values if isinstance(value, DeviceTensor) else value


def _rewrap(value, args, unwrapped_args):
    """Outputs of a device op are device tensors; an in-place op hands back the device tensor it changed."""
    if not isinstance(value, torch.Tensor):
        return value
    for original, unwrapped in zip(_leaves(args), _leaves(unwrapped_args)):
        if unwrapped is value and isinstance(original, DeviceTensor):
            return original
    return DeviceTensor(value)


def _forget_device_tensors() -> None:
    """augserve caches small tensors per device: ones made on the real meta device must not be used here,
    nor these stand-ins after."""
    from augserve import random
    from augserve.ops import audio, resample

    for cached in (random._mixed_counters, resample._spline_basis, audio.mel_filterbank):
        cached.cache_clear()
