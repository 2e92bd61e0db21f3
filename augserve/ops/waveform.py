"""Batched waveform ops: pure functions of (x, per-sample params).

Every op takes float32 ``x`` of shape ``(B, C, T)``, per-sample valid lengths
``lengths`` (B,) int64 and per-sample parameters of shape ``(B,)``; samples at
``t >= length`` are padding and come out 0. Shapes depend only on the input
shapes and the plain Python config arguments, never on parameter values, so one
set of kernels serves any draw without a host round trip. Randomness (noise,
impulse responses) arrives as arguments.
"""

from __future__ import annotations

import math

import torch
from scipy.fft import next_fast_len

from augserve import device_constants

OVERSAMPLE = 4  # _resample's denser grid: cubic interpolation between its steps errs below -55 dB
RESAMPLE_GUARD = 256  # zero steps after a signal before its FFT's wrap-around
RESAMPLE_EDGE = 0.05  # width of the anti-aliasing cut's raised-cosine edge, a fraction of Nyquist


def _rows(transform, x: torch.Tensor, n: int) -> torch.Tensor:
    """``transform`` (rfft or irfft of size ``n``) along the last axis, each row's bits independent of the batch.

    CPU FFT libraries take another code path for a single row than for several, and the
    results differ in the last bits; a lone row is transformed beside a zero row.
    """
    if x.numel() == x.shape[-1]:
        return transform(torch.cat([x, torch.zeros_like(x)], dim=0), n=n)[:1]
    return transform(x, n=n)


def _times(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * b, complex, from real products: CPU vector code rounds complex products differently in a loop's body
    and its scalar tail, so an element's bits would depend on where it sits in the batch."""
    return torch.complex(a.real * b.real - a.imag * b.imag, a.real * b.imag + a.imag * b.real)


def _scaled(spectrum: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Complex ``spectrum`` times real ``gain`` (broadcast), one real product per component."""
    return torch.view_as_complex(torch.view_as_real(spectrum) * gain[..., None])


def valid_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 1, T) boolean: True on each sample's valid part."""
    return torch.arange(length, device=lengths.device) < lengths.view(-1, 1, 1)


def rms(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) root mean square over each sample's valid part, all channels together (0 for empty samples)."""
    power = (x * valid_mask(lengths, x.shape[-1])).square().sum(dim=(1, 2))
    return (power / (lengths.clamp(min=1) * x.shape[1])).sqrt()


def colored_noise(white: torch.Tensor, f_decay: float, lengths: torch.Tensor) -> torch.Tensor:
    """White noise (B, C, T) shaped to power ~ 1/f^f_decay (0 white, 1 pink, 2 brown, -1 blue), unit RMS.

    The valid part's spectrum is scaled by k^(-f_decay/2) at rfft bin k, so the
    power falls 3 * f_decay dB per octave; DC is removed for any colour but
    white (the gain has no value at k = 0).
    """
    length = white.shape[-1]
    mask = valid_mask(lengths, length)
    if f_decay == 0:  # white already: the FFT pair would change nothing but the last bits
        noise = white * mask
        return noise / rms(noise, lengths).clamp(min=1e-20).view(-1, 1, 1)
    spectrum = _rows(torch.fft.rfft, white * mask, length)
    gain = device_constants.cached(white.device, ("noise colour", spectrum.shape[-1], float(f_decay)),
                                   lambda: _colour_gain(spectrum.shape[-1], float(f_decay)).to(white.device))
    noise = _rows(torch.fft.irfft, _scaled(spectrum, gain), length) * mask
    return noise / rms(noise, lengths).clamp(min=1e-20).view(-1, 1, 1)


def _colour_gain(bins: int, f_decay: float) -> torch.Tensor:
    """k^(-f_decay/2) at rfft bin k, and at DC 1 for white noise, else 0."""
    k = torch.arange(bins, dtype=torch.float64)
    return torch.where(k > 0, k.clamp(min=1) ** (-f_decay / 2), float(f_decay == 0)).to(torch.float32)


def add_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x + noise scaled so that 20 log10(rms(x) / rms(scaled noise)) = snr_db over the valid part.

    Silent samples (or silent noise) get nothing added.
    """
    mask = valid_mask(lengths, x.shape[-1])
    noise = noise * mask
    noise_rms = rms(noise, lengths)
    ratio = torch.exp(snr_db * (-math.log(10.0) / 20))  # 10^(-snr/20); exp, not pow (see _times)
    scale = torch.where(noise_rms > 0, rms(x, lengths) / noise_rms.clamp(min=1e-30) * ratio, 0.0)
    return (x + noise * scale.view(-1, 1, 1)) * mask


def shift(x: torch.Tensor, shift: torch.Tensor, lengths: torch.Tensor, rollover: bool) -> torch.Tensor:
    """Each sample moved right by ``shift`` (B,) int64 steps (left when negative) within its valid part.

    ``rollover``: what leaves one end enters at the other (``torch.roll`` on ``x[..., :length]``);
    otherwise the vacated steps are 0.
    """
    length = x.shape[-1]
    position = torch.arange(length, device=x.device).view(1, -1)
    source = position - shift.view(-1, 1)
    inside = position < lengths.view(-1, 1)
    if rollover:
        source = torch.remainder(source, lengths.clamp(min=1).view(-1, 1))
    else:
        inside = inside & (source >= 0) & (source < lengths.view(-1, 1))
    moved = x.gather(-1, source.clamp(0, length - 1)[:, None, :].expand(x.shape))
    return moved * inside[:, None, :]


def synthetic_rir(u: torch.Tensor, rt60: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(B, L) room impulse responses from uniform draws ``u`` (B, L): a direct path of 1 at t = 0, then
    uniform noise in [-1, 1) under an exponential envelope 60 dB down at ``rt60`` (B,) seconds; scaled to
    unit energy, so a white input keeps its power.
    """
    steps = torch.arange(u.shape[1], device=u.device, dtype=torch.float32)
    envelope = torch.exp(steps * (-3.0 * math.log(10.0) / (rt60.to(torch.float32).view(-1, 1) * sample_rate)))
    tail = (2.0 * u.to(torch.float32) - 1.0) * envelope
    ir = torch.cat([torch.ones_like(tail[:, :1]), tail[:, 1:]], dim=1)
    return ir / ir.norm(dim=1, keepdim=True)


def reverb(x: torch.Tensor, ir: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x convolved with its sample's impulse response ``ir`` (B, L) on every channel: the first T steps of the
    full convolution (torchaudio's ``fftconvolve``), the tail past each valid length dropped."""
    length = x.shape[-1]
    mask = valid_mask(lengths, length)
    n = next_fast_len(length + ir.shape[1] - 1, real=True)
    spectrum = _times(_rows(torch.fft.rfft, x * mask, n), _rows(torch.fft.rfft, ir.to(torch.float32), n)[:, None, :])
    return _rows(torch.fft.irfft, spectrum, n)[..., :length] * mask


def _sinc_lowpass(cutoff: torch.Tensor, taps: int) -> torch.Tensor:
    """(B, taps) Hamming-windowed sinc low-pass kernels, centred; ``cutoff`` (B,) in cycles per step."""
    half = taps // 2
    offset = torch.arange(-half, half + 1, device=cutoff.device, dtype=torch.float32)
    window = torch.hamming_window(taps, periodic=False, device=cutoff.device)
    band = 2.0 * cutoff.to(torch.float32).clamp(0.0, 0.5).view(-1, 1)
    return band * torch.sinc(band * offset) * window


def _zero_phase_filter(x: torch.Tensor, kernel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x filtered by its sample's centred kernel (B, taps) without delay, as one batched FFT product.

    The kernel's centre goes to step 0 and its left half wraps to the end of the
    FFT frame; the frame is long enough that the wrap only ever meets zeros. The
    kernel is symmetric, so its spectrum is real: the filter has no phase.
    """
    length, half = x.shape[-1], kernel.shape[1] // 2
    mask = valid_mask(lengths, length)
    n = next_fast_len(max(length + half, kernel.shape[1]), real=True)  # a clip shorter than the kernel too
    gap = kernel.new_zeros(kernel.shape[0], n - kernel.shape[1])
    circular = torch.cat([kernel[:, half:], gap, kernel[:, :half]], dim=1)
    response = _rows(torch.fft.rfft, circular, n).real  # a symmetric kernel's spectrum is real
    spectrum = _scaled(_rows(torch.fft.rfft, x * mask, n), response[:, None, :])
    return _rows(torch.fft.irfft, spectrum, n)[..., :length] * mask


def _check_taps(taps: int) -> None:
    if taps < 3 or taps % 2 == 0:
        raise ValueError(f"taps must be odd and at least 3, got {taps}")


def lowpass(x: torch.Tensor, cutoff_hz: torch.Tensor, lengths: torch.Tensor, sample_rate: int,
            taps: int = 1023) -> torch.Tensor:
    """Zero-phase low-pass at ``cutoff_hz`` (B,): a Hamming-windowed sinc FIR of ``taps`` taps.

    A windowed-sinc FIR is -6 dB (half amplitude) at its cutoff, reaches about -53 dB
    3.3 * sample_rate / taps Hz beyond it, and is flat to 0.02 dB that far inside.
    """
    _check_taps(taps)
    return _zero_phase_filter(x, _sinc_lowpass(cutoff_hz / sample_rate, taps), lengths)


def highpass(x: torch.Tensor, cutoff_hz: torch.Tensor, lengths: torch.Tensor, sample_rate: int,
             taps: int = 1023) -> torch.Tensor:
    """Zero-phase high-pass at ``cutoff_hz`` (B,): a unit impulse minus ``lowpass``'s kernel (-6 dB at cutoff)."""
    _check_taps(taps)
    kernel = -_sinc_lowpass(cutoff_hz / sample_rate, taps)
    kernel[:, taps // 2] += 1.0
    return _zero_phase_filter(x, kernel, lengths)


def bandpass(x: torch.Tensor, center_hz: torch.Tensor, bandwidth_fraction: torch.Tensor, lengths: torch.Tensor,
             sample_rate: int, taps: int = 1023) -> torch.Tensor:
    """Zero-phase band-pass from center * (1 - fraction / 2) to center * (1 + fraction / 2) Hz, the band
    torch-audiomentations' BandPassFilter draws: the difference of two ``lowpass`` kernels (-6 dB at both edges)."""
    _check_taps(taps)
    low = center_hz * (1.0 - 0.5 * bandwidth_fraction) / sample_rate
    high = center_hz * (1.0 + 0.5 * bandwidth_fraction) / sample_rate
    return _zero_phase_filter(x, _sinc_lowpass(high, taps) - _sinc_lowpass(low, taps), lengths)


def _resample(x: torch.Tensor, factor: torch.Tensor, lengths: torch.Tensor, out_length: int) -> torch.Tensor:
    """(B, C, out_length): step t of the output reads x at position t * factor (B,), band-limited: the valid
    part's spectrum is cut to min(1, 1/factor) of Nyquist (a raised-cosine edge, so nothing aliases), made
    ``OVERSAMPLE`` times denser exactly by zero-padding it, and read by 4-point cubic (Catmull-Rom)
    interpolation between the dense steps. Two FFTs and four gathers: 6x faster on the CPU than a 32-tap
    windowed sinc per output step, and closer to a 256-tap one (59 dB against 42 dB on noise below 0.75 of
    Nyquist). Positions are float64: t * factor must stay well under a step off after 1e5 steps."""
    batch, channels, length = x.shape
    n = next_fast_len(length + RESAMPLE_GUARD, real=True)  # zeros after the signal: no wrap-around
    spectrum = _rows(torch.fft.rfft, x * valid_mask(lengths, length), n)
    dense = _rows(torch.fft.irfft, _scaled(spectrum, _resample_gain(factor, spectrum.shape[-1], n)),
                  n * OVERSAMPLE) * OVERSAMPLE
    dense = torch.nn.functional.pad(dense, (1, 2))  # the neighbours of the first and last steps
    position = torch.arange(out_length, device=x.device, dtype=torch.float64) * (
        factor.to(torch.float64) * OVERSAMPLE).view(-1, 1)
    left = position.floor()
    t = (position - left).to(torch.float32)[:, None]
    index = (left.to(torch.int64) + 1).clamp(max=dense.shape[-1] - 3)[:, None].expand(batch, channels, -1)
    p0, p1, p2, p3 = (dense.gather(-1, index + k) for k in (-1, 0, 1, 2))
    return p1 + 0.5 * t * (p2 - p0 + t * (2 * p0 - 5 * p1 + 4 * p2 - p3 + t * (3 * (p1 - p2) + p3 - p0)))


def _resample_gain(factor: torch.Tensor, bins: int, n: int) -> torch.Tensor:
    """(B, 1, bins) the anti-aliasing cut of ``_resample``: 1 up to (1 - edge) * cutoff, a raised cosine to 0
    at the cutoff min(1, 1/factor) of Nyquist; none when reading slower (factor <= 1). An even ``n``'s
    Nyquist bin stands for both signs: halved once it is an inner bin of the denser spectrum."""
    frequency = torch.arange(bins, device=factor.device, dtype=torch.float32) * (2.0 / n)  # of Nyquist
    cutoff = (1.0 / factor.to(torch.float32)).clamp(max=1.0).view(-1, 1, 1)
    ramp = ((cutoff - frequency) / RESAMPLE_EDGE).clamp(0.0, 1.0)
    gain = torch.where(cutoff >= 1.0, 1.0, 0.5 - 0.5 * torch.cos(math.pi * ramp))
    if n % 2 == 0:
        gain = gain * device_constants.on(factor.device, (1.0,) * (bins - 1) + (0.5,), torch.float32)
    return gain


def sped_lengths(lengths: torch.Tensor, factor: torch.Tensor, limit: int) -> torch.Tensor:
    """Valid lengths after ``resample_by``: ceil(length / factor), at most ``limit``."""
    return torch.ceil(lengths.to(torch.float64) / factor.to(torch.float64)).to(torch.int64).clamp(max=limit)


def stretched_lengths(lengths: torch.Tensor, rate: torch.Tensor, limit: int) -> torch.Tensor:
    """Valid lengths after ``time_stretch``: round(length / rate) (librosa's), at most ``limit``."""
    return torch.round(lengths.to(torch.float64) / rate.to(torch.float64)).to(torch.int64).clamp(max=limit)


def tiled_clips(clips: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor, offset: torch.Tensor,
                length: int) -> torch.Tensor:
    """(B, length): clip ``index`` (B,) of a set (N, L) read from ``offset`` (a fraction of its valid length)
    and tiled over its valid part, as a background noise shorter than the sample repeats: one gather."""
    clip_lengths = lengths.index_select(0, index)
    start = (offset * clip_lengths).to(torch.int64)
    position = (start[:, None] + torch.arange(length, device=clips.device)[None]) % clip_lengths[:, None]
    return clips.index_select(0, index).gather(1, position)


def resample_by(x: torch.Tensor, factor: torch.Tensor,
                lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Speed change by ``factor`` (B,) (Kaldi speed perturbation: pitch and tempo together; 1.1 is 10% faster
    and shorter): y[t] = x at t * factor, band-limited. Returns (y (B, C, T), new lengths ceil(length / factor)
    clamped to T); y is 0 past the new length."""
    length = x.shape[-1]
    new_lengths = sped_lengths(lengths, factor, length)
    return _resample(x, factor, lengths, length) * valid_mask(new_lengths, length), new_lengths


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(N, frames, n_fft) -> (N, (frames - 1) * hop + n_fft): frames summed at ``hop`` apart. With n_fft a
    multiple of hop (the vocoder's 4), as n_fft / hop shifted slice-adds: 3x faster than ``fold`` on the CPU."""
    count, steps, n_fft = frames.shape
    parts = n_fft // hop
    if n_fft % hop:
        size = (steps - 1) * hop + n_fft
        added = torch.nn.functional.fold(frames.transpose(1, 2), (1, size), (1, n_fft), stride=(1, hop))
        return added.view(count, size)
    pieces = frames.view(count, steps, parts, hop)
    out = frames.new_zeros(count, steps + parts - 1, hop)
    for part in range(parts):  # n_fft / hop slices, whatever the batch
        out[:, part:part + steps] += pieces[:, :, part]
    return out.view(count, -1)


def _rows_at(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, K, bins) rows ``index`` (N, K) of each sample's own (N, F, bins) ``table``: whole rows copied."""
    count, frames, bins = table.shape
    flat = index + frames * torch.arange(count, device=index.device).view(-1, 1)
    return table.reshape(count * frames, bins).index_select(0, flat.view(-1)).view(count, -1, bins)


def _stretch(x: torch.Tensor, rate: torch.Tensor, lengths: torch.Tensor, n_fft: int, hop: int,
             out_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``time_stretch`` with an output of ``out_length`` steps (longer than T when a slowed sample must fit).

    librosa's phase vocoder, in the frames-by-bins layout (every gather copies whole rows) and without angles:
    its running phase only enters through e^(i phase), and each step it adds is the phase difference of two
    input frames modulo 2 pi, so the output's unit phasors are a cumulative product of the input's unit
    phasors' ratios, u1 * conj(u0): no atan, no wrapping, no sin or cos."""
    batch, channels, length = x.shape
    count = batch * channels
    window = torch.hann_window(n_fft, device=x.device, dtype=torch.float32)
    padded = torch.nn.functional.pad((x * valid_mask(lengths, length)).reshape(count, length), (n_fft // 2,) * 2)
    spectrum = torch.fft.rfft(padded.unfold(-1, n_fft, hop) * window, dim=-1)  # centred STFT: (N, F, bins)
    frames = spectrum.shape[1]
    # librosa's STFT of the valid part alone has 1 + length // hop frames, equal to the first ones here;
    # two zero frames after them close the interpolation, as librosa's padding does.
    in_frames = (1 + lengths // hop).repeat_interleave(channels).view(-1, 1)
    kept = (torch.arange(frames + 2, device=x.device) < in_frames).unsqueeze(-1)  # (N, F + 2, 1)
    spectrum = torch.nn.functional.pad(torch.view_as_real(spectrum), (0, 0, 0, 0, 0, 2))
    re, im = (spectrum[..., part] * kept for part in (0, 1))
    magnitude = torch.sqrt(re * re + im * im)
    inverse = torch.where(magnitude > 0, 1.0 / magnitude, 0.0)
    cos, sin = torch.where(magnitude > 0, re * inverse, 1.0), im * inverse  # a silent bin's phase is 0
    out_frames = (out_length + n_fft // 2) // hop + 1  # every frame that reaches the output's last step
    steps = torch.arange(out_frames, device=x.device, dtype=torch.float64) * rate.to(torch.float64).view(-1, 1)
    steps = steps.repeat_interleave(channels, 0)
    left = steps.floor().to(torch.int64).clamp(max=frames)
    alpha = (steps - left).to(torch.float32).unsqueeze(-1)
    inside = steps < in_frames  # (N, out_frames): librosa's np.arange(0, frames, rate)
    interpolated = torch.lerp(_rows_at(magnitude, left), _rows_at(magnitude, left + 1), alpha) * inside.unsqueeze(-1)
    cos0, sin0, cos1, sin1 = cos[:, :-1], sin[:, :-1], cos[:, 1:], sin[:, 1:]
    ratio = torch.complex(cos1 * cos0 + sin1 * sin0, sin1 * cos0 - cos1 * sin0)  # u(f + 1) * conj(u(f))
    turns = torch.cat([torch.complex(cos[:, :1], sin[:, :1]), _rows_at(ratio, left[:, :-1])], dim=1)
    phasor = turns.cumprod(dim=1)  # e^(i running phase): a scalar scan, the same bits alone or in any batch
    # times a real magnitude: both products have an exact zero term, so vector and scalar code agree
    pieces = torch.fft.irfft(phasor * interpolated, n=n_fft, dim=-1) * window
    signal = _overlap_add(pieces, hop)
    # istft as librosa's: divide by the sum of squared windows of the sample's own frames where that sum is
    # above float32's tiny.
    envelope = _overlap_add(window.square() * inside.to(torch.float32).unsqueeze(-1), hop)
    signal = torch.where(envelope > torch.finfo(torch.float32).tiny, signal / envelope, signal)
    new_lengths = stretched_lengths(lengths, rate, out_length)
    begin = n_fft // 2
    return signal[:, begin:begin + out_length].view(batch, channels, -1) * valid_mask(new_lengths, out_length), \
        new_lengths


def time_stretch(x: torch.Tensor, rate: torch.Tensor, lengths: torch.Tensor, n_fft: int = 2048,
                 hop: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Tempo change by ``rate`` (B,) at the same pitch (rate > 1: faster and shorter) with a phase vocoder:
    ``librosa.effects.time_stretch`` per sample (centred Hann STFT, zero padded). Returns (y (B, C, T),
    new lengths round(length / rate) clamped to T); a slowed sample loses what runs past T.
    """
    if hop > n_fft // 2:
        raise ValueError(f"hop {hop} must be at most n_fft // 2 = {n_fft // 2}")
    return _stretch(x, rate, lengths, n_fft, hop, x.shape[-1])


def pitch_shift(x: torch.Tensor, semitones: torch.Tensor, lengths: torch.Tensor, n_fft: int = 2048,
                hop: int = 512, max_semitones: float = 12.0) -> torch.Tensor:
    """Pitch moved by ``semitones`` (B,), continuous, at the same tempo and length:
    ``librosa.effects.pitch_shift``, a ``time_stretch`` by 2^(-s/12) read back at 2^(s/12) per step.

    The stretched intermediate holds T * 2^(max_semitones / 12) steps; shifts are clamped to
    [-max_semitones, max_semitones] so that it holds every sample whole.
    """
    if hop > n_fft // 2:
        raise ValueError(f"hop {hop} must be at most n_fft // 2 = {n_fft // 2}")
    length = x.shape[-1]
    factor = torch.exp(semitones.to(torch.float64).clamp(-max_semitones, max_semitones) * (math.log(2.0) / 12))
    stretched, stretched_lengths = _stretch(x, 1.0 / factor, lengths, n_fft, hop,
                                            math.ceil(length * 2.0 ** (max_semitones / 12)))
    return _resample(stretched, factor, stretched_lengths, length) * valid_mask(lengths, length)
