"""``augserve bench``: throughput side by side with the reference libraries, as ratios.

Every engine gets the same batch in one process; each row reports images per
second and the ratio to the first engine of its case, the anchor. For whole
policies the anchor is torchvision.transforms.v2 applied per sample (the fair
baseline: every sample gets its own random op, as here); for single kernels it
is kornia's batched kernel with the same per-sample parameters, the library we
would otherwise call. Absolute numbers depend on the machine; ratios are what
to compare.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import sys
from typing import Callable

import torch
from tqdm import tqdm

from augserve.pipeline import Pipeline
from augserve.presets import PRESETS
from augserve.tools.bench.harness import ANCHOR, KORNIA_KERNEL, Engine, Wanted, server_process, time_interleaved

def _torchvision(transform, x: torch.Tensor) -> Callable[[], object]:
    return lambda: torch.stack([transform(image) for image in x])


def _kornia(transform, x: torch.Tensor) -> Callable[[], object]:
    return lambda: transform(x.float().div_(255))


def _dali(policy: str, x: torch.Tensor) -> Engine | None:
    """DALI's auto_aug on the CPU (or GPU), fed the same images, if DALI is installed."""
    try:
        from nvidia.dali import fn, pipeline_def
        from nvidia.dali.auto_aug import rand_augment, trivial_augment
    except ImportError:
        return None
    images = [img.permute(1, 2, 0).contiguous().cpu().numpy() for img in x]
    on_gpu = x.is_cuda

    @pipeline_def(enable_conditionals=True, batch_size=len(images), num_threads=os.cpu_count() or 1,
                  device_id=torch.cuda.current_device() if on_gpu else None, prefetch_queue_depth=1)
    def pipe():
        data = fn.external_source(source=lambda: images, layout="HWC", batch=True)
        if on_gpu:
            data = data.gpu()
        if policy == "rand_augment":
            return rand_augment.rand_augment(data, n=2, m=9)
        return trivial_augment.trivial_augment_wide(data)

    built = pipe()
    built.build()
    return Engine(f"DALI auto_aug ({'GPU' if on_gpu else 'CPU'})", lambda: built.run(),
                  "HWC, its own op set")


def _cases(x: torch.Tensor, wanted: Wanted) -> dict[str, list[Engine]]:
    """The cases ``wanted`` accepts by name, built only then (a server is started only for cases using one)."""
    cases = _policy_cases(x, wanted)
    cases.update(_mix_cases(x, wanted))
    cases.update(_policy_parity_cases(x, wanted))
    flags = ["--max-batch", str(max(x.shape[0], 64)), "--max-delay-ms", "5", "--device", str(x.device)]
    server = functools.cache(lambda: server_process(flags)[0])
    cases.update(_service_cases(x, server, wanted))
    cases.update(_wire_cases(x, server, wanted))
    from augserve.tools.bench.wire_ceiling import wire_ceiling_cases

    cases.update(wire_ceiling_cases(x.cpu().numpy(), wanted))
    cases.update(_feed_cases(x, server, wanted))
    from augserve.tools.bench.encoded import encoded_cases

    cases.update(encoded_cases(x.device, server, wanted, x.shape[0]))
    cases.update(_sequence_cases(x.device, wanted))
    from augserve.tools.bench.waveform import waveform_cases

    cases.update(waveform_cases(x.device, wanted, x.shape[0]))
    from augserve.tools.bench.tabular import tabular_cases

    cases.update(tabular_cases(x.device, wanted))
    from augserve.tools.bench.text import text_cases

    cases.update(text_cases(wanted))  # on the CPU, whatever the device: the goal is stated there
    cases.update(_kernel_cases(x, wanted))
    if not x.is_cuda:
        from augserve.tools.bench.contention import contention_cases

        series = torch.randn(256, 3, 1000, generator=torch.Generator().manual_seed(3))
        warp, policy = Pipeline.from_spec([{"op": "time_warp"}]), Pipeline.from_spec("imagenet-randaug")
        cases.update(contention_cases({
            "time_warp on 256x3x1000": (lambda: warp(series, seed=0), len(series), 40),
            f"imagenet-randaug on {x.shape[0]} images": (lambda: policy(x, seed=0), x.shape[0], 1)}, wanted))
    return {name: engines for name, engines in cases.items() if wanted(name)}


def _policy_cases(x: torch.Tensor, wanted: Wanted) -> dict[str, list[Engine]]:
    """RandAugment and TrivialAugmentWide: torchvision per sample, kornia batched, DALI where installed."""
    names = {"rand_augment": "RandAugment n=2 m=9", "trivial_augment": "TrivialAugmentWide"}
    if not any(map(wanted, names.values())):
        return {}
    import kornia.augmentation.auto as kauto
    from torchvision.transforms import v2

    cases = {
        names["rand_augment"]: [
            Engine(ANCHOR, _torchvision(v2.RandAugment(num_ops=2, magnitude=9), x.cpu())),
            Engine("kornia.augmentation.auto batched", _kornia(kauto.RandAugment(n=2, m=9), x),
                   "one op per batch; uint8->float included"),
            *_plan_engines([{"op": "rand_augment", "n": 2, "m": 9}], x),
        ],
        names["trivial_augment"]: [
            Engine(ANCHOR, _torchvision(v2.TrivialAugmentWide(), x.cpu())),
            Engine("kornia.augmentation.auto batched", _kornia(kauto.TrivialAugment(), x),
                   "one op per batch; uint8->float included"),
            *_plan_engines([{"op": "trivial_augment"}], x),
        ],
    }
    for policy, case in names.items():
        dali = _dali(policy, x) if wanted(case) else None
        if dali is not None:
            cases[case].insert(2, dali)
    return cases


def _plan_engines(spec, x: torch.Tensor) -> list[Engine]:
    """The pipeline on both plans (and, on CUDA, the device plan replayed as a CUDA graph): the same bits."""
    grouped, device = (Pipeline.from_spec(spec, execution=plan) for plan in ("grouped", "device"))
    engines = [Engine("augserve grouped plan", lambda: grouped(x, seed=0), "the CPU's plan" if not x.is_cuda else ""),
               Engine("augserve device plan", lambda: device(x, seed=0), "the GPU's plan, eager" if x.is_cuda else
                      "the GPU's plan: every op over the batch")]
    if x.is_cuda:
        from augserve.server.graphs import CudaGraphs
        from augserve.server.metrics import Metrics

        graphs = CudaGraphs(x.device, Metrics(x.device))
        engines.append(Engine("augserve device plan, CUDA graph", lambda: graphs.run(device, device.device_call(
            x, seed=0)), "draws on the host included"))
    return engines


def _service_cases(x: torch.Tensor, server: Callable[[], str], wanted: Wanted) -> dict[str, list[Engine]]:
    """The same pipeline in process and through the server on loopback (the product's client), in one run."""
    import concurrent.futures

    from augserve.client import Client

    batch, spec, in_flight, length = x.shape[0], "rand-m9-n2", 4, 16
    case = f"service: {spec}, {batch} samples"
    if not wanted(case):
        return {}
    target = server()
    host = x.cpu()
    over_bytes = Client(target, timeout=600, shared_memory=False)
    over_shm = Client(target, timeout=600, shared_memory=True)
    eighths = list(host.split(max(batch // 8, 1)))
    small_clients = [Client(target, timeout=600, shared_memory=False) for _ in eighths]
    threads = concurrent.futures.ThreadPoolExecutor(max_workers=len(eighths))
    pipe = Pipeline.from_spec(spec)

    def stream(client):
        def run():
            for augmented in client.map([host] * length, pipeline=spec, prefetch=in_flight):
                del augmented  # as a training loop does: each batch is used, then let go
        return run

    def eight_clients():
        list(threads.map(lambda pair: pair[0].augment(pair[1], pipeline=spec), zip(small_clients, eighths)))

    return {case: [
        Engine("in process", lambda: pipe(x, seed=0)),
        Engine("Client.map, gRPC bytes", stream(over_bytes),
               f"AugmentStream of {length} batches, {in_flight} in flight", batch * length),
        Engine("Client.map, shared memory", stream(over_shm),
               f"AugmentStream of {length} batches, {in_flight} in flight, same host", batch * length),
        Engine("1 client x 64 samples", lambda: over_bytes.augment(host, pipeline=spec), "unary, gRPC bytes"),
        Engine("8 clients x 8 samples", eight_clients, "unary, gRPC bytes, merged by the batcher"),
    ]}


def _wire_cases(x: torch.Tensor, server: Callable[[], str], wanted: Wanted) -> dict[str, list[Engine]]:
    """What the answer's dtype costs over gRPC bytes (a remote server): a normalizing preset, 3 ways."""
    from augserve.client import Client

    batch, spec, length = x.shape[0], "imagenet-randaug", 8
    case = f"wire: {spec} ({batch}x3x224x224 in), gRPC bytes, {length} batches, 4 in flight"
    if not wanted(case):
        return {}
    target = server()
    host = x.cpu().numpy()
    client = Client(target, timeout=600, shared_memory=False)
    per_sample = {dtype: 3 * 224 * 224 * size // 1000 for dtype, size in (("float32", 4), ("float16", 2),
                                                                           ("uint8", 1))}

    def stream(**options):
        def run():
            for augmented in client.map([host] * length, pipeline=spec, prefetch=4, **options):
                augmented.normalized()  # a deferred normalize runs here (the trainer's device, in a real job)
        return run

    return {case: [
        Engine("server normalizes, float32 out", stream(), f"{per_sample['float32']} KB/sample answered",
               batch * length),
        Engine("server normalizes, float16 out", stream(out_dtype="float16"),
               f"{per_sample['float16']} KB/sample answered", batch * length),
        Engine("defer_normalize: uint8 out, the client normalizes", stream(defer_normalize=True),
               f"{per_sample['uint8']} KB/sample answered; float32 after", batch * length),
    ]}


class _Images(torch.utils.data.Dataset):
    """uint8 images, optionally transformed per sample (what a DataLoader worker does)."""

    def __init__(self, images: torch.Tensor, transform=None):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        return (image if self.transform is None else self.transform(image)), 0


def _feed_cases(x: torch.Tensor, server: Callable[[], str], wanted: Wanted) -> dict[str, list[Engine]]:
    """Training-loop feed: DataLoader workers running torchvision RandAugment vs RemoteAugment."""
    from torch.utils.data import DataLoader
    from torchvision.transforms import v2

    from augserve.client import Client, RemoteAugment

    batch, epoch_batches = x.shape[0], 4
    case = f"training feed: RandAugment n=2 m=9, epochs of {epoch_batches}x{batch}"
    if not wanted(case):
        return {}
    target = server()
    images = x.cpu().repeat(epoch_batches, 1, 1, 1)
    workers = os.cpu_count() or 1

    def loader(transform=None) -> DataLoader:
        return DataLoader(_Images(images, transform), batch_size=batch, num_workers=workers, persistent_workers=True)

    local = loader(v2.RandAugment(num_ops=2, magnitude=9))
    remote = RemoteAugment(loader(), Client(target, timeout=600), "rand-m9-n2", num_classes=1, prefetch=4)
    return {case: [
        Engine(f"DataLoader, {workers} workers, torchvision per-sample", lambda: list(local),
               "augments in the workers", len(images)),
        Engine("RemoteAugment (server on loopback)", lambda: list(remote),
               "workers only load; server augments, 4 in flight", len(images)),
    ]}


def _sequence_cases(device: torch.device, wanted: Wanted) -> dict[str, list[Engine]]:
    """Time-series warps on 256x3x1000 against tsaug; SpecAugment-LD on 64x80x1000."""
    if not any(map(wanted, ("time warp, 256x3x1000", "magnitude warp / drift, 256x3x1000",
                            "SpecAugment-LD, 64x80x1000"))):
        return {}
    generator = torch.Generator().manual_seed(2)
    series = torch.randn(256, 3, 1000, generator=generator).cumsum(-1).to(device)
    spectrograms = torch.randn(64, 80, 1000, generator=generator).to(device)

    def ours(spec, batch):
        pipe = Pipeline.from_spec(spec)
        return lambda: pipe(batch, seed=0)

    cases: dict[str, list[Engine]] = {}
    try:
        import tsaug
    except ImportError:
        tsaug = None
    if tsaug is not None:
        channels_last = series.transpose(1, 2).contiguous().cpu().numpy()  # tsaug takes (N, T, C)
        time_warp = tsaug.TimeWarp(n_speed_change=4, max_speed_ratio=3)
        drift = tsaug.Drift(max_drift=0.5, n_drift_points=4)
        cases["time warp, 256x3x1000"] = [
            Engine("tsaug TimeWarp", lambda: time_warp.augment(channels_last), "numpy", 256),
            Engine("augserve time_warp", ours([{"op": "time_warp", "knots": 4}], series), "", 256),
        ]
        cases["magnitude warp / drift, 256x3x1000"] = [
            Engine("tsaug Drift", lambda: drift.augment(channels_last), "numpy", 256),
            Engine("augserve magnitude_warp", ours([{"op": "magnitude_warp", "knots": 4}], series), "", 256),
            Engine("augserve drift", ours([{"op": "drift", "points": 4}], series), "", 256),
        ]
    waveforms = torch.randn(64, 160_000, generator=generator).to(device)  # 10 s at 16 kHz: 1000 frames
    from_audio = {"steps": [{"op": "log_mel"}, *PRESETS["specaugment-LD"][1]]}
    cases["SpecAugment-LD, 64x80x1000"] = _torchaudio_masking(spectrograms) + [
        Engine("augserve specaugment-LD", ours("specaugment-LD", spectrograms), "warp + 2 freq + 2 time masks", 64),
        Engine("augserve log_mel + specaugment-LD", ours(from_audio, waveforms),
               "from 64 x 10 s of 16 kHz audio", 64),
    ]
    return cases


def _torchaudio_masking(spectrograms: torch.Tensor) -> list[Engine]:
    """torchaudio's per-sample (iid) masks, when torchaudio is installed: the anchor for SpecAugment."""
    try:
        import torchaudio.transforms as T
    except ImportError:
        return []
    freq, time_ = T.FrequencyMasking(27, iid_masks=True), T.TimeMasking(100, iid_masks=True)

    def masks():
        x = spectrograms[:, None]
        for _ in range(2):
            x = time_(freq(x))
        return x

    return [Engine("torchaudio masks (no warp)", masks, "2 freq + 2 time masks, iid", 64)]


def _mix_cases(x: torch.Tensor, wanted: Wanted) -> dict[str, list[Engine]]:
    """Mixup + CutMix (switch 0.5) on float images with 1000 classes, against timm and torchvision."""
    if not wanted("mixup+cutmix, 1000 classes"):
        return {}
    try:
        from timm.data import Mixup
    except ImportError:
        return {}
    from torchvision.transforms import v2

    unit = x.float() / 255
    labels = torch.randint(0, 1000, (x.shape[0],), generator=torch.Generator().manual_seed(1)).to(x.device)
    timm_options = dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=1000)
    timm_elem, timm_batch = Mixup(mode="elem", **timm_options), Mixup(mode="batch", **timm_options)
    torchvision_mix = v2.RandomChoice([v2.MixUp(alpha=0.8, num_classes=1000), v2.CutMix(alpha=1.0, num_classes=1000)])
    ours = {mode: Pipeline.from_spec([{"op": "mix", "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": mode}])
            for mode in ("elem", "batch")}
    return {"mixup+cutmix, 1000 classes": [
        Engine("timm Mixup elem", lambda: timm_elem(unit.clone(), labels), "per-sample loop; clone: it mixes in place"),
        Engine("timm Mixup batch", lambda: timm_batch(unit.clone(), labels), "one lambda per batch"),
        Engine("torchvision.v2 MixUp or CutMix", lambda: torchvision_mix(unit, labels), "one lambda per batch"),
        Engine("augserve elem", lambda: ours["elem"](unit, labels, num_classes=1000)),
        Engine("augserve batch", lambda: ours["batch"](unit, labels, num_classes=1000)),
    ]}


def _posterize_zero_as_one(ops: list) -> None:
    """Pillow 13 refuses posterize(0), which timm's PosterizeIncreasing asks for at magnitude 10: keep 1 bit."""
    for op in ops:
        if op.name.startswith("Posterize"):
            op.aug_fn = lambda image, bits, _posterize=op.aug_fn, **kwargs: _posterize(image, max(bits, 1), **kwargs)


def _policy_parity_cases(x: torch.Tensor, wanted: Wanted) -> dict[str, list[Engine]]:
    """timm's policies by timm (PIL, per sample, as its DataLoader workers run them) and torchvision's AugMix
    per sample, against the same policies batched."""
    if not any(map(wanted, ("timm rand-m9-mstd0.5-inc1", "AugMix (torchvision's)", "timm augmix-m3-w3"))):
        return {}
    try:
        from timm.data.auto_augment import augment_and_mix_transform, rand_augment_transform
    except ImportError:
        return {}
    from PIL import Image
    from torchvision.transforms import v2

    images = [Image.fromarray(image.permute(1, 2, 0).cpu().numpy()) for image in x]
    hparams = {"translate_const": int(x.shape[-1] * 0.45), "img_mean": (124, 116, 104)}  # as timm's factory sets
    timm_rand = rand_augment_transform("rand-m9-mstd0.5-inc1", dict(hparams))
    _posterize_zero_as_one(timm_rand.ops)
    timm_augmix = augment_and_mix_transform("augmix-m3-w3", dict(hparams, translate_pct=0.3))
    _posterize_zero_as_one(timm_augmix.ops)
    ours_rand, ours_timm_augmix = Pipeline.from_spec("rand-m9-mstd0.5-inc1"), Pipeline.from_spec("augmix-m3-w3")
    ours_augmix = Pipeline.from_spec([{"op": "augmix"}])
    per_image = "timm's own transform, per PIL image"
    return {
        "timm rand-m9-mstd0.5-inc1": [
            Engine("timm, per sample", lambda: [timm_rand(image) for image in images], per_image),
            Engine("augserve", lambda: ours_rand(x, seed=0), "timm_rand_augment, per-sample draws"),
        ],
        "AugMix (torchvision's)": [
            Engine("torchvision.v2 AugMix, per sample", _torchvision(v2.AugMix(), x.cpu()), "severity 3, width 3"),
            Engine("augserve augmix", lambda: ours_augmix(x, seed=0)),
        ],
        "timm augmix-m3-w3": [
            Engine("timm, per sample", lambda: [timm_augmix(image) for image in images], per_image),
            Engine("augserve", lambda: ours_timm_augmix(x, seed=0), "timm_augmix, per-sample draws"),
        ],
    }


def _kernel_cases(x: torch.Tensor, wanted: Wanted) -> dict[str, list[Engine]]:
    """Our hand-written kernels against kornia's, on float input (all kornia takes) and on uint8."""
    if not any(map(wanted, ("kernel: sharpness", "kernel: solarize", "kernel: rotate (nearest)"))):
        return {}
    import kornia.enhance as kenhance
    import kornia.geometry.transform as kgeometry

    from augserve.ops import color, geometry

    batch, _, height, width = x.shape
    unit = x.float() / 255
    factor = torch.linspace(0.1, 1.9, batch, device=x.device)
    angle = torch.linspace(-30, 30, batch, device=x.device)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    inverse = geometry.inverse_affine_matrix(-angle, zero, zero, one, zero, zero, zero, zero)
    center = torch.tensor([[width / 2 - 0.5, height / 2 - 0.5]], device=x.device).expand(batch, 2)
    forward = kgeometry.get_rotation_matrix2d(center, angle, torch.ones(batch, 2, device=x.device))

    def ours(kernel):
        return [Engine("augserve float", lambda: kernel(unit)), Engine("augserve uint8", lambda: kernel(x))]

    return {
        "kernel: sharpness": [Engine(KORNIA_KERNEL, lambda: kenhance.sharpness(unit, factor)),
                              *ours(lambda b: color.sharpness(b, factor))],
        "kernel: solarize": [Engine(KORNIA_KERNEL, lambda: kenhance.solarize(unit, factor / 2)),
                             *ours(lambda b: color.solarize(b, factor / 2 * color.max_value(b.dtype)))],
        "kernel: rotate (nearest)": [
            Engine(KORNIA_KERNEL, lambda: kgeometry.warp_affine(unit, forward, (height, width), mode="nearest")),
            *ours(lambda b: geometry.warp_affine(b, inverse, "nearest")),
        ],
    }


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def run_bench(batch: int = 64, size: int = 224, repeats: int = 5, device: str = "cpu",
              out: str | None = None, only: str | None = None) -> str:
    """Run every case (or those whose name contains ``only``), print the table, and optionally write it as Markdown."""
    if batch < 1 or size < 8 or repeats < 1:
        raise ValueError("bench: expected --batch >= 1, --size >= 8 and --repeats >= 1")
    if only is not None and out:
        raise ValueError("bench: --out writes the whole table; run without --only")
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator).to(device)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    from augserve.tools.bench import hosts
    from augserve.tools.bench.fairness import CASE as FAIRNESS, fairness_rows
    from augserve.tools.bench.many_jobs import CASE as MANY_JOBS, many_jobs_rows

    fairness = only is None or only.lower() in FAIRNESS
    many_jobs = only is None or only.lower() in MANY_JOBS
    across_hosts = only is None or only.lower() in hosts.CASE
    if across_hosts and not hosts.can_run():
        print("bench: the many-hosts rows need root, ip and iptables (network namespaces); left out", file=sys.stderr)
        across_hosts = False
    cases = _cases(x, lambda name: only is None or only.lower() in name.lower())
    if not cases and not fairness and not many_jobs and not across_hosts:
        names: list[str] = []
        _cases(x, lambda name: names.append(name))  # every name, nothing built
        raise ValueError(f"--only: no case name contains {only!r}; the cases: "
                         f"{', '.join([*names, FAIRNESS, MANY_JOBS, hosts.CASE])}")

    rows = []
    progress = tqdm(total=repeats * len(cases), desc="bench", unit="round")
    for case, engines in cases.items():
        seconds = time_interleaved(engines, repeats, sync, progress)
        rates = [(engine.samples or batch) / spent for engine, spent in zip(engines, seconds)]
        for engine, rate in zip(engines, rates):
            rows.append((case, engine.name, rate, rate / rates[0], engine.note))
    progress.close()
    if fairness:  # its own server and clients, measured as the goals are stated (latencies, shares)
        rows += fairness_rows(x.device)
    if many_jobs:  # job processes streaming served epochs together, as their goals are stated (aggregates)
        rows += many_jobs_rows(files=8 * batch)
    if across_hosts:  # replicas and a trainer on network hosts of their own, on the CPU
        rows += hosts.hosts_rows()

    stamp = datetime.date.today().isoformat()
    lines = [
        f"### {batch}x3x{size}x{size} uint8, {device}: {_machine(device)}",
        "",
        f"torch {torch.__version__}, {stamp}, median over {repeats} round-robin rounds of 2 timed batches per engine, "
        "each turn after one untimed batch.",
        "",
        "| case | engine | samples/s | x anchor (first row of the case) | note |",
        "|---|---|---:|---:|---|",
    ]
    lines += [f"| {case} | {name} | {rate:,.0f} | {ratio:.2f}x | {note} |" for case, name, rate, ratio, note in rows]
    table = "\n".join(lines)
    print(table)
    if out:
        _write_results(out, table)
    return table


def _write_results(path: str, table: str) -> None:
    """Keep the file's hand-written preamble; replace the generated table for this device kind."""
    marker = "<!-- bench table: generated by `augserve bench` -->"
    preamble = ""
    if os.path.exists(path):
        with open(path) as existing:
            preamble = existing.read().split(marker)[0]
    with open(path, "w") as results:
        results.write(f"{preamble or '# Benchmarks' + chr(10) + chr(10)}{marker}\n\n{table}\n")
