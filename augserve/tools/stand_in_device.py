"""A stand-in accelerator on a CPU machine: tensors that hold CPU values and say they live on a device.

CUDA refuses a CPU tensor of one or more dimensions mixed into the math of its tensors, and
``.numpy()`` of a device tensor; the meta device refuses the same but holds no values, so code
that branches on values (grouping samples by the op they drew, ``.item()``) cannot run there.
``OnDevice`` runs everything on the CPU values and records each op that mixed host tensors into
device math, as CUDA would have refused it, so a whole pipeline can be checked in CI.

``OnDevice(cuda=True)`` makes the stand-ins say ``cuda:0`` (``is_cuda`` is True, so every CUDA branch of
the code is taken) and counts what a GPU would pay for: each op that computes on device tensors is a
kernel (views and allocations are free), each read of a device value on the host a sync (``.item()``,
``bool()``, ``.tolist()``, ``nonzero``, ``unique``, boolean-mask indexing, copies to the host), each
host tensor copied to the device a host copy. ``trace`` keeps the kernels with their shapes, so two
runs that launch different kernels can be told apart.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

META = torch.device("meta")
CUDA = torch.device("cuda", 0)
_OPEN: list["OnDevice"] = []
# Ops CUDA gives CPU operands on purpose: index tensors and device-to-host/host-to-device copies.
ALLOWED_HOST_OPERANDS = {"aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default",
                         "aten._to_copy.default", "aten.copy_.default", "aten.lift_fresh.default"}
# Ops that launch no kernel: allocations, and metadata of what is already there.
FREE = {"aten.empty.memory_format", "aten.empty_strided.default", "aten.empty_like.default",
        "aten.new_empty.default", "aten.new_empty_strided.default", "aten.lift_fresh.default",
        "aten.detach.default", "aten.alias.default"}
# Ops that read device values on the host (a sync), whatever their arguments.
SYNCING = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
           "aten._unique2.default", "aten.unique_dim.default", "aten.unique_consecutive.default",
           "aten.is_nonzero.default", "aten.equal.default", "aten.allclose.default"}
_HOST_COPIES = {torch.tensor, torch.as_tensor}  # factories that copy host values to the device
_SCALAR_READS = {torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__,
                 torch.Tensor.__index__}


class DeviceTensor(torch.Tensor):
    """CPU values behind a tensor whose ``device`` is the stand-in's."""

    @staticmethod
    def __new__(cls, values: torch.Tensor, device: torch.device = META):
        tensor = torch.Tensor._make_wrapper_subclass(cls, values.shape, strides=values.stride(),
                                                    storage_offset=values.storage_offset(), dtype=values.dtype,
                                                    device=device, requires_grad=False)
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


def _restride(wrapper: DeviceTensor, values: torch.Tensor) -> None:
    """Give a device tensor its values' shape and strides, in place (below this module's dispatch)."""
    with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.Python)):
        torch.ops.aten.as_strided_.default(wrapper, values.shape, values.stride(), values.storage_offset())


class _Factories(TorchFunctionMode):
    """``torch.tensor(..., device=...)`` and other factories asked for the device give device tensors
    (``torch.tensor`` copies in C++, below the dispatcher: only here can it be seen)."""

    def __init__(self, owner: "OnDevice"):
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        owner = self.owner
        if func is torch.Tensor.tolist and isinstance(args[0], DeviceTensor):
            owner.syncs.append("tolist")
            return args[0].values.tolist()  # CUDA copies to the host for it
        if func in _SCALAR_READS and isinstance(args[0], DeviceTensor):
            owner.syncs.append(func.__name__)  # on CUDA: a copy to the host, waiting for the queue
            return func(args[0].values, *args[1:], **kwargs)
        if func is torch.Tensor.new_tensor and isinstance(args[0], DeviceTensor):
            owner.host_copies.append("new_tensor")
            return owner.wrap(args[0].values.new_tensor(*args[1:], **kwargs))  # copied below the dispatcher too
        if func is torch.Tensor.numpy and isinstance(args[0], DeviceTensor):
            raise TypeError("can't convert a device tensor to numpy: copy it to the host first (.cpu())")
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and isinstance(args[0], DeviceTensor):
            return self._index(func, args)  # torch would start CUDA to make index tensors
        if func is torch.Tensor.to and any(owner.is_device(v) for v in _device_like(args[1:], kwargs)):
            return self._to_device(args, kwargs)  # torch would start CUDA before dispatching
        if owner.is_device(kwargs.get("device")) and not isinstance(func, type(torch.Tensor.to)):
            if func in _HOST_COPIES:
                owner.host_copies.append(getattr(func, "__name__", str(func)))
            else:
                owner.count(getattr(func, "__name__", str(func)), ())
            return tree_map(owner.wrap, func(*args, **{**kwargs, "device": torch.device("cpu")}))
        if owner.device != META and getattr(func, "__name__", "") != "__get__":
            return self._inside(func, args, kwargs)
        return func(*args, **kwargs)

    def _inside(self, func, args, kwargs):
        """Any other call: its device tensors enter as meta ones (torch sets the CUDA device before it
        dispatches, and there is none), and what comes out says the stand-in's device again."""
        outer: dict[int, DeviceTensor] = {}

        def enter(value):
            if not isinstance(value, DeviceTensor) or value.device == META:
                return value
            inner = DeviceTensor(value.values, META)
            outer[id(inner)] = value
            return inner

        def leave(value):
            if not isinstance(value, DeviceTensor):
                return value
            found = outer.get(id(value))
            return found if found is not None else DeviceTensor(value.values, self.owner.device)

        inner_args, inner_kwargs = tree_map(enter, (args, kwargs))
        if not outer:
            return func(*args, **kwargs)
        return tree_map(leave, func(*inner_args, **inner_kwargs))


    def _index(self, func, args):
        """``x[index]`` or ``x[index] = value`` on the values: a view (free), a gather or scatter (a kernel),
        or a boolean mask (a sync: the count of True values decides the shape)."""
        owner = self.owner
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        tensors = [v for v in index if isinstance(v, torch.Tensor)]
        if any(v.dtype == torch.bool for v in tensors):
            owner.syncs.append(f"{func.__name__} with a boolean mask")
        elif tensors or func is torch.Tensor.__setitem__:
            owner.count(f"index {func.__name__}", [tuple(args[0].shape)])
        values = tuple(_unwrap(v) for v in index)
        values = values if isinstance(args[1], tuple) else values[0]
        if func is torch.Tensor.__setitem__:
            args[0].values[values] = _unwrap(args[2])
            return None
        return owner.wrap(args[0].values[values])

    def _to_device(self, args, kwargs):
        """``x.to(device, ...)``: a host tensor is copied (counted), a device tensor converted or itself."""
        source, owner = args[0], self.owner
        values = source.values if isinstance(source, DeviceTensor) else source
        cpu = torch.device("cpu")
        rest = [cpu if owner.is_device(v) else v for v in args[1:]]
        out = values.to(*rest, **{k: cpu if k == "device" else v for k, v in kwargs.items()})
        if not isinstance(source, DeviceTensor):
            owner.host_copies.append(f"to device {tuple(values.shape)}")
        elif out is values:
            return source
        else:
            owner.count("aten._to_copy.default", [tuple(values.shape)])
        return owner.wrap(out)


def _device_like(args, kwargs) -> list:
    """The arguments of ``Tensor.to`` that name a device."""
    found = [v for v in args if isinstance(v, (str, torch.device))]
    return found + ([kwargs["device"]] if kwargs.get("device") is not None else [])


class OnDevice(TorchDispatchMode):
    """Inside it, ``to_device(x)`` gives device tensors; factories asked for the device make them too.
    ``mixed`` lists the ops that took a host tensor (dim >= 1) beside device tensors; ``kernels``,
    ``syncs`` and ``host_copies`` count what a GPU would pay (``reset()`` starts a new count)."""

    def __init__(self, cuda: bool = False):
        super().__init__()
        self.device = CUDA if cuda else META
        self.mixed: list[str] = []
        self.trace: list[str] = []
        self.syncs: list[str] = []
        self.host_copies: list[str] = []
        self._factories = _Factories(self)

    @property
    def kernels(self) -> int:
        return len(self.trace)

    def reset(self) -> None:
        """Start counting afresh (after a warm-up call that filled per-device caches)."""
        self.trace, self.syncs, self.host_copies = [], [], []

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

    def to_device(self, x: torch.Tensor) -> DeviceTensor:
        return DeviceTensor(x, self.device)

    def wrap(self, value, device: torch.device | None = None):
        return DeviceTensor(value, device or self.device) if isinstance(value, torch.Tensor) else value

    def is_device(self, value) -> bool:
        return value is not None and torch.device(value).type in (self.device.type, META.type)

    def count(self, name: str, shapes) -> None:
        self.trace.append(f"{name} {shapes}")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.handle(func, args, kwargs)

    def handle(self, func, args, kwargs):
        kwargs = kwargs or {}
        name = str(func)
        leaves = [v for v in _leaves((args, kwargs)) if isinstance(v, torch.Tensor)]
        on_device = any(isinstance(v, DeviceTensor) for v in leaves)
        asked_device = kwargs.get("device")
        to_device = self.is_device(asked_device)
        host = [v for v in leaves if not isinstance(v, DeviceTensor) and v.dim() > 0]
        if on_device and host and name not in ALLOWED_HOST_OPERANDS:
            self.mixed.append(f"{name} with host operands of shapes {[tuple(v.shape) for v in host]}")
        if on_device:
            self._account(func, name, args, leaves, asked_device)
        if name == "aten._to_copy.default" and asked_device is not None:
            source = args[0]
            values = source.values if isinstance(source, DeviceTensor) else source
            if to_device and not isinstance(source, DeviceTensor):
                self.host_copies.append(f"to device {tuple(values.shape)}")
            kwargs = {**kwargs, "device": torch.device("cpu")}
            out = func(values, *args[1:], **kwargs)
            return self.wrap(out, META) if to_device else out
        if to_device:
            kwargs = {**kwargs, "device": torch.device("cpu")}
        unwrapped_args, unwrapped_kwargs = tree_map(_unwrap, (args, kwargs))
        out = func(*unwrapped_args, **unwrapped_kwargs)
        if not (on_device or to_device):
            return out
        return tree_map(lambda v: self._rewrap(v, args, unwrapped_args), out)

    def _account(self, func, name: str, args, leaves, asked_device) -> None:
        """Count an op on device tensors as a kernel, a sync, a copy between host and device, or nothing."""
        if name in SYNCING:
            self.syncs.append(name)
            return
        if name in ("aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default") and any(
                v.dtype == torch.bool for v in leaves[1:]):
            self.syncs.append(f"{name} with a boolean mask")
            return
        if name == "aten._to_copy.default" and asked_device is not None and not self.is_device(asked_device):
            self.syncs.append(f"copy to the host {tuple(args[0].shape)}")
            return
        if name == "aten.copy_.default" and not isinstance(args[0], DeviceTensor):
            self.syncs.append(f"copy to the host {tuple(args[0].shape)}")
            return
        if name == "aten.copy_.default" and not isinstance(args[1], DeviceTensor) and args[1].dim() > 0:
            self.host_copies.append(f"copy_ {tuple(args[1].shape)}")
            return
        if func.is_view or name in FREE:
            return
        self.count(name, [tuple(v.shape) for v in leaves])


    def _rewrap(self, value, args, unwrapped_args):
        """Outputs of a device op are device tensors; an in-place op hands back the device tensor it changed."""
        if not isinstance(value, torch.Tensor):
            return value
        for original, unwrapped in zip(_leaves(args), _leaves(unwrapped_args)):
            if unwrapped is value and isinstance(original, DeviceTensor):
                if original.shape != value.shape or original.stride() != value.stride():
                    _restride(original, value)  # an in-place view (stft's transpose_) moved the values' axes
                return original
        return self.wrap(value, META)


def _leaves(tree):
    found = []
    tree_map(lambda v: found.append(v), tree)
    return found


def _unwrap(value):
    return value.values if isinstance(value, DeviceTensor) else value


def _forget_device_tensors() -> None:
    """augserve keeps constants per device: ones made on the real meta device must not be used here, nor these
    stand-ins after."""
    from augserve import device_constants

    device_constants.forget()
