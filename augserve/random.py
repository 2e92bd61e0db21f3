"""Counter-based, replayable parameter sampling.

Every random number a pipeline draws for a sample is a pure function of
``(seed, key, slot, draw)``: the request seed, the sample's key, the pipeline
slot (step, sub-step) and the draw index inside it. Nothing depends on the
batch the sample arrived in, its position, or the device, so a sample replays
bit-identically in any batch. The hash is murmur3's 32-bit finalizer evaluated
in int64 with exact modular arithmetic (no reliance on overflow behaviour),
vectorized over the batch.
"""

from __future__ import annotations

import enum
import math

import numpy as np
import torch

from augserve import device_constants

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
_GOLDEN = 0x9E3779B9
SEED_LIMIT = 1 << 64
GAMMA_ATTEMPTS = 8  # Marsaglia-Tsang accepts > 95% of tries for shape >= 1: 8 fail with p < 1e-10


def _mulmod32_torch(a: torch.Tensor, c: int) -> torch.Tensor:
    """(a * c) mod 2**32 for 0 <= a < 2**32 without int64 overflow."""
    lo = (a & _MASK16) * c
    hi = (((a >> 16) * c) & _MASK16) << 16
    return (lo + hi) & _MASK32


def _fmix32_torch(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = _mulmod32_torch(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mulmod32_torch(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _fmix32_numpy(h: np.ndarray) -> np.ndarray:
    """The same finalizer in uint32, where numpy's multiply wraps modulo 2**32 by definition."""
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _mulmod32(a: torch.Tensor, c: int) -> torch.Tensor:
    if a.device.type == "cpu":
        return torch.from_numpy((a.numpy().astype(np.uint32) * np.uint32(c)).astype(np.int64))
    return _mulmod32_torch(a, c)


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finalizer on int64 tensors holding 32-bit words.

    On the CPU it runs in numpy uint32 (7 operations instead of 17 on tiny tensors, ~5x faster);
    elsewhere in int64 torch ops with exact modular multiplies. Both give the same bits.
    """
    if h.device.type == "cpu":
        return torch.from_numpy(_fmix32_numpy(h.numpy().astype(np.uint32)).astype(np.int64))
    return _fmix32_torch(h)


def _fmix32_int(h: int) -> int:
    """``_fmix32`` on a Python int: scalar words are mixed without any tensor op."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def _mix_word(value: int) -> int:
    return _fmix32_int(((value & _MASK32) + _GOLDEN) & _MASK32)


def _mixed_counters(first: int, n: int, device: torch.device) -> torch.Tensor:
    """The mixed words of counters first..first+n-1, as absorbed by ``_absorb`` (made once per device)."""
    return device_constants.cached(device, ("mixed counters", first, n), lambda: torch.tensor(
        [_mix_word(c) for c in range(first, first + n)], dtype=torch.int64, device=device))


def _absorb(state: torch.Tensor, value: torch.Tensor | int) -> torch.Tensor:
    """Fold one 32-bit word into a 32-bit state (order-sensitive).

    Scalar words (seed, slot, draw) are mixed in Python, so absorbing them
    costs one finalizer over the batch rather than two.
    """
    mixed = _mix_word(value) if isinstance(value, int) else _fmix32((value + _GOLDEN) & _MASK32)
    return _fmix32(state ^ mixed)


def _split64(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return value & _MASK32, (value >> 32) & _MASK32


class Draw(enum.IntEnum):
    """A step's named draws: subclass it with one member per random quantity the step draws.

    The numbers are part of every recorded sample's ``(seed, key, slot, draw)``, so a released
    number never changes meaning. ``steps.base.register`` refuses two names on one number, and
    asking one stream for the same draw twice fails at that call (both would get the same values).
    """


class SampleRng:
    """Per-sample random streams for one batch.

    ``SampleRng(seed, keys).fork(slot)`` names a pipeline slot; ``uniform(draw)``
    and friends return one value per sample (or ``(B, n)`` for ``n`` values), for
    a named ``Draw``.
    """

    def __init__(self, seed: int | torch.Tensor, keys: torch.Tensor, *, _state: torch.Tensor | None = None):
        self._drawn: set[Draw] = set()
        if _state is not None:
            self._state = _state
            return
        if keys.dtype != torch.int64 or keys.dim() != 1:
            raise ValueError(f"keys: expected a 1-D int64 tensor, got {keys.dtype} of shape {tuple(keys.shape)}")
        if isinstance(seed, torch.Tensor):
            state = self._per_sample_seeds(seed, keys)
        else:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
                raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
            start = _fmix32_int(0x6A09E667 ^ _mix_word(seed & _MASK32))
            start = _fmix32_int(start ^ _mix_word(seed >> 32))
            state = torch.full_like(keys, start)
        key_lo, key_hi = _split64(keys)
        state = _absorb(state, key_lo)
        self._state = _absorb(state, key_hi)

    @staticmethod
    def _per_sample_seeds(seeds: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """One seed per sample (int64 holding the uint64 bits): merged requests keep their own streams.

        Gives exactly the state a batch with that single seed would start from.
        """
        if seeds.dtype != torch.int64 or seeds.shape != keys.shape:
            raise ValueError(f"seed: expected an int or an int64 tensor shaped like keys {tuple(keys.shape)}, "
                             f"got {seeds.dtype} of shape {tuple(seeds.shape)}")
        seed_lo, seed_hi = _split64(seeds.to(keys.device))
        state = torch.full_like(keys, 0x6A09E667)
        return _absorb(_absorb(state, seed_lo), seed_hi)

    @property
    def batch_size(self) -> int:
        return self._state.shape[0]

    @property
    def device(self) -> torch.device:
        return self._state.device

    @property
    def state(self) -> torch.Tensor:
        """Each sample's stream position (B,) int64: what a copy to another device carries."""
        return self._state

    def with_state(self, state: torch.Tensor) -> "SampleRng":
        """This stream with its state replaced (the same state on another device), nothing drawn yet."""
        return SampleRng(0, state, _state=state)

    def fork(self, slot: int) -> "SampleRng":
        """A child stream for a named slot; forks nest (step, then sub-step)."""
        return SampleRng(0, self._state, _state=_absorb(self._state, slot))

    def select(self, index: torch.Tensor) -> "SampleRng":
        """The streams of a subset of samples (index or boolean mask)."""
        return SampleRng(0, self._state, _state=self._state[index])

    def _words(self, draw: int, first: int, n: int | None) -> torch.Tensor:
        state = _absorb(self._state, draw)
        if n is None:
            return _absorb(state, first)
        return _fmix32(state[:, None] ^ _mixed_counters(first, n, self.device)[None, :])

    def _claim(self, draw: Draw) -> int:
        if not isinstance(draw, Draw):
            raise TypeError(f"draws are named: expected a member of a Draw enum, got {draw!r}")
        if draw in self._drawn:
            raise RuntimeError(f"draw {type(draw).__qualname__}.{draw.name} asked for twice from one stream: "
                               "both would get the same values; give the second its own name")
        self._drawn.add(draw)
        return int(draw)

    def bits(self, draw: Draw, n: int | None = None) -> torch.Tensor:
        """32 random bits per sample as int64: shape (B,), or (B, n)."""
        return self._words(self._claim(draw), 0, n)

    @staticmethod
    def _to_unit(words: torch.Tensor) -> torch.Tensor:
        return (words >> 8).to(torch.float32) * (1.0 / (1 << 24))

    def uniform(self, draw: Draw, low: float = 0.0, high: float = 1.0, n: int | None = None) -> torch.Tensor:
        """Uniform float32 in [low, high) from the top 24 bits (exact in float32)."""
        return low + (high - low) * self._to_unit(self.bits(draw, n))

    def index(self, draw: Draw, count: int, n: int | None = None) -> torch.Tensor:
        """An index in [0, count) per sample, int64 (uniform; bias below 2**-32 * count)."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        return (self.bits(draw, n) * count) >> 32

    def bernoulli(self, draw: Draw, p: float, n: int | None = None) -> torch.Tensor:
        """Boolean per sample, True with probability p (p=1 is always True)."""
        return self.uniform(draw, n=n) < p

    def normal(self, draw: Draw, mean: float = 0.0, std: float = 1.0, n: int | None = None) -> torch.Tensor:
        """Normal(mean, std) by Box-Muller from two independent uniforms of one draw."""
        number, width = self._claim(draw), 1 if n is None else n
        u1 = 1.0 - self._to_unit(self._words(number, 0, n))  # (0, 1]: log is finite
        return mean + std * _box_muller(u1, self._to_unit(self._words(number, width, n)))

    def gamma(self, draw: Draw, alpha: float, n: int = 1) -> torch.Tensor:
        """(B, n) float64 Gamma(alpha, 1) variates: Marsaglia-Tsang with a fixed number of attempts.

        Every value reads its own fixed block of uniforms, so it replays whatever the batch;
        alpha < 1 uses Gamma(alpha + 1) * U ** (1 / alpha).
        """
        number, tries = self._claim(draw), GAMMA_ATTEMPTS
        unit = self._to_unit(self._words(number, 0, n * (3 * tries + 1))).to(torch.float64).view(-1, n, 3 * tries + 1)
        shape = alpha + 1.0 if alpha < 1.0 else alpha
        d = shape - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        z = _box_muller(1.0 - unit[..., :tries], unit[..., tries:2 * tries])
        v = (1.0 + c * z) ** 3
        log_u = torch.log(1.0 - unit[..., 2 * tries:3 * tries])
        accept = (v > 0) & (log_u < 0.5 * z * z + d - d * v + d * torch.log(v.clamp(min=1e-300)))
        first = accept.to(torch.int8).argmax(dim=-1, keepdim=True)
        value = torch.where(accept.any(dim=-1), (d * v).gather(-1, first).squeeze(-1), torch.full_like(v[..., 0], d))
        if alpha < 1.0:
            value = value * (1.0 - unit[..., -1]) ** (1.0 / alpha)
        return value

    def dirichlet(self, draw: Draw, alpha: float, k: int) -> torch.Tensor:
        """(B, k) float64 weights from Dirichlet(alpha, ..., alpha): normalized Gamma variates."""
        gammas = self.gamma(draw, alpha, n=k)
        return gammas / gammas.sum(dim=1, keepdim=True)

    def permutation(self, draw: Draw, n: int) -> torch.Tensor:
        """An independent uniformly random permutation of range(n) per sample: (B, n)."""
        return torch.argsort(self.bits(draw, n), dim=1, stable=True)

    def pixel_normal(self, radius: Draw, angle: Draw, shape: tuple[int, ...], std: float = 1.0) -> torch.Tensor:
        """Normal(0, std) noise of shape (B, *shape), each element keyed by its position (two draws)."""
        return _box_muller(1.0 - self.pixel_uniform(radius, shape), self.pixel_uniform(angle, shape), std)

    def pixel_uniform(self, draw: Draw, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform [0,1) noise of shape (B, *shape), each element keyed by its position.

        Uses one finalizer round per element (a Weyl sequence), not the full
        absorb chain: noise fields are large and need no more mixing than this.
        """
        number, count = self._claim(draw), math.prod(shape)
        weyl = _mulmod32(torch.arange(count, device=self.device, dtype=torch.int64), _GOLDEN)
        words = _fmix32((_absorb(self._state, number)[:, None] + weyl[None, :]) & _MASK32)
        return self._to_unit(words).view(self.batch_size, *shape)


def _box_muller(u1: torch.Tensor, u2: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """Normal(0, std) from u1 in (0, 1] and u2 in [0, 1)."""
    return std * torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)


def sample_keys(indices: torch.Tensor, epoch: int) -> torch.Tensor:
    """Keys that replay a sample's augmentation per (epoch, dataset index) and differ between epochs."""
    return indices + (epoch << 32)
