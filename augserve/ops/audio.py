"""SpecAugment (Park et al. 2019, 2020) on batched spectrograms (B, F, T) or (B, C, F, T), and the
log-mel front end that turns waveforms into them.

Masks and warps are drawn per sample and applied to the whole batch at once.
The time warp is piecewise linear: the frame at ``center`` moves to
``center + distance`` and the frames on either side are stretched or squeezed
linearly, first and last frame fixed. This is the warp the paper's sparse
image warp performs along the time axis, without its smoothing kernel.
"""

from __future__ import annotations

import torch

from augserve import device_constants
from augserve.ops.resample import interp

FREQ_AXIS, TIME_AXIS = -2, -1


def mask_spans(u_width: torch.Tensor, u_start: torch.Tensor, max_width: torch.Tensor | int,
               length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, m) spans: width uniform in [0, max_width], start uniform in [0, length - width]."""
    max_width = torch.as_tensor(max_width, device=u_width.device).clamp(max=length)
    width = (u_width.double() * (max_width + 1)).to(torch.int64).clamp(max=max_width)
    start = (u_start.double() * (length - width + 1)).to(torch.int64)
    return start, width


def span_mask(start: torch.Tensor, width: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) boolean: True where any of a sample's spans covers the position."""
    position = torch.arange(length, device=start.device).view(1, 1, -1)
    inside = (position >= start[..., None]) & (position < (start + width)[..., None])
    return inside.any(dim=1)


def apply_mask(x: torch.Tensor, mask: torch.Tensor, axis: int, value: torch.Tensor) -> torch.Tensor:
    """Set the masked frequency rows or time columns of each sample to its ``value`` (B,)."""
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[axis] = x.shape[axis]
    return torch.where(mask.view(shape), value.to(x.dtype).view(-1, *([1] * (x.dim() - 1))), x)


def time_warp_positions(u_center: torch.Tensor, u_distance: torch.Tensor, window: int,
                        length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source frame for every output frame: (B, T) positions, plus the centres and distances drawn.

    centre uniform in [W, T - W), distance uniform in [-W, W]; needs T > 2W.
    """
    center = window + (u_center.double() * (length - 2 * window)).floor()
    distance = ((u_distance.double() * 2 - 1) * window).round()
    last = float(length - 1)
    xp = torch.stack([torch.zeros_like(center), center + distance, torch.full_like(center, last)], dim=1)
    fp = torch.stack([torch.zeros_like(center), center, torch.full_like(center, last)], dim=1)
    frames = torch.arange(length, device=center.device, dtype=torch.float64).expand(center.shape[0], -1)
    return interp(frames, xp, fp), center, distance



def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int, f_min: float, f_max: float,
                   device: torch.device) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters on the HTK mel scale, unnormalized (torchaudio's defaults), made
    once per device."""
    return device_constants.cached(device, ("mel filterbank", n_freqs, sample_rate, n_mels, f_min, f_max),
                                   lambda: _host_mel_filterbank(n_freqs, sample_rate, n_mels, f_min, f_max).to(device))


def _host_mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(float(_hz_to_mel(torch.tensor(f_min, dtype=torch.float64))),
                                float(_hz_to_mel(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2,
                                dtype=torch.float64)
    hz_points = _mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]
    slopes = hz_points[None, :] - all_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).to(torch.float32)


def log_mel_spectrogram(waveform: torch.Tensor, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                        f_min: float, f_max: float, top_db: float) -> torch.Tensor:
    """(B, [C,] T) float waveforms -> (B, [C,] n_mels, frames) power mel spectrograms in dB.

    Hann-windowed STFT with centred (reflect-padded) frames, |X|^2, HTK mel filters, then
    ``10 log10(max(mel, 1e-10))`` clamped to ``top_db`` below each spectrogram's peak (0: no
    clamp): torchaudio's MelSpectrogram followed by AmplitudeToDB(top_db=...).
    """
    leading, length = waveform.shape[:-1], waveform.shape[-1]
    window = torch.hann_window(n_fft, device=waveform.device, dtype=waveform.dtype)
    frames = torch.stft(waveform.reshape(-1, length), n_fft, hop_length, window=window, center=True,
                        pad_mode="reflect", return_complex=True)
    power = frames.real.square() + frames.imag.square()  # (N, n_fft // 2 + 1, frames)
    filters = mel_filterbank(power.shape[1], sample_rate, n_mels, f_min, f_max, waveform.device)
    mel = torch.matmul(power.transpose(1, 2), filters).transpose(1, 2)  # rows independent of the batch size
    decibels = 10.0 * torch.log10(mel.clamp(min=1e-10))
    if top_db:
        peak = decibels.amax(dim=(1, 2), keepdim=True)
        decibels = torch.maximum(decibels, peak - top_db)
    return decibels.reshape(leading + decibels.shape[1:])
