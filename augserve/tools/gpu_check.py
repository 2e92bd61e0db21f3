"""``make gpu-check``: everything that needs a CUDA device, in one run, its numbers kept in bench/RESULTS.md.

A GPU machine may be lent for minutes only, with a torch of its own: this runs the CUDA tests, the
device contract, a CPU-vs-CUDA difference table per op, both plans on the device (the grouped plan, the
device plan eager and replayed as a CUDA graph) at batches of 64, 256 and 1024, the share of samples that
come out bit-identical on the CPU and the GPU per preset, a short CUDA bench and the encoded-JPEG path,
and writes them with the card's name and every version into one section of the results file (replaced
on each run), so a lent GPU is used in one call. The section is written as each part ends, and a part, row
or case that fails is written as such (its traceback on stderr) while the rest runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import subprocess
import sys
import time
import traceback

BENCH_CASES = ("RandAugment n=2 m=9", "JPEG files in", "time warp", "SpecAugment-LD")
SECTION = "## CUDA check (`make gpu-check`)"
# Policies chain single ops (a grey level after a rotate becomes 16 after posterize) and mixing needs labels:
# the difference table and its CUDA test take the single image ops alone.
NOT_SINGLE_OPS = {"augmix", "auto_augment", "rand_augment", "trivial_augment", "timm_augmix", "timm_auto_augment",
                  "timm_rand_augment", "mix", "mixup", "cutmix", "label_smoothing", "normalize"}


def op_example(op: str, side: int) -> dict:
    """A spec of ``op`` alone: the fields it requires, sized for ``side``-square images."""
    sizes = {"size": side * 3 // 4}
    required = {"center_crop": sizes, "random_resized_crop": sizes, "resize": sizes,
                "random_crop": {**sizes, "padding": 4}, "gaussian_blur": {"kernel_size": 5}}
    return {"op": op, **required.get(op, {})}


def single_image_ops() -> list[str]:
    from augserve.modality import Modality
    from augserve.steps import STEPS

    return sorted(op for op, cls in STEPS.items() if Modality.IMAGE in cls.modalities and op not in NOT_SINGLE_OPS)


def versions() -> list[str]:
    import torch

    names = ("torch", "torchvision", "grpcio", "protobuf", "kornia", "numpy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    card = torch.cuda.get_device_name()
    return [f"{card}, CUDA {torch.version.cuda}, Python {platform.python_version()}", ", ".join(found)]


def run_tests(timeout: float) -> str:
    """pytest over the CUDA tests and the device contract: its summary line, and the failures' names."""
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-rf", "-p", "no:cacheprovider",
               "tests/test_cuda.py", "tests/test_device_contract.py"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"pytest did not finish within {timeout:.0f} s"
    lines = result.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith("FAILED")]
    print(result.stdout[-6000:], file=sys.stderr)
    return "\n".join([f"`{' '.join(command[3:])}`: {lines[-1] if lines else result.stderr[-500:]}", *failed])


def difference_table(side: int = 96, copies: int = 4) -> list[str]:
    """Each single image op on the sample photos, CPU against CUDA: largest difference and share of values
    more than one grey level apart (policies chain ops and amplify these, so they are left out)."""
    import torch

    from augserve import Pipeline
    from augserve.photos import load_images

    photos, _ = load_images(None, side)
    batch = photos.repeat(copies, 1, 1, 1)
    rows = ["| op | largest difference (grey levels) | share > 1 level | draws equal |", "|---|---:|---:|---|"]
    for op in single_image_ops():
        try:
            pipe = Pipeline.from_spec([op_example(op, side)])
            cpu, gpu = pipe(batch, seed=11), pipe(batch.to("cuda"), seed=11)
            levels = (cpu.x.float() - gpu.x.cpu().float()).abs() * (255 if cpu.x.is_floating_point() else 1)
            same = all(torch.allclose(v.double(), g[k].cpu().double(), atol=1e-4) if isinstance(v, torch.Tensor)
                       else v == g[k] for c, g in zip(cpu.params, gpu.params) for k, v in c.items())
            rows.append(f"| {op} | {levels.max():.0f} | {(levels > 1).float().mean():.4f} | "
                        f"{'yes' if same else 'NO'} |")
        except Exception as error:  # noqa: BLE001 - one op's failure is its row; the others still run
            rows.append(f"| {op} | {failed(error)} | | |")
    return rows


# preset: image side (None: the audio preset takes 1 s of 16 kHz noise)
PLAN_PRESETS = {"imagenet-randaug": 240, "imagenet-trivial": 240, "cifar-randaug": 32, "sound-classify": None}
PLAN_BATCHES = (64, 256, 1024)


def _samples_per_second(run, batch: int, repeats: int, sync) -> float:
    """Median over ``repeats`` timed calls after two untimed ones, the device synchronized around each."""
    import statistics

    for _ in range(2):
        run()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds)


def plan_rows(repeats: int, presets: dict = PLAN_PRESETS, batches: tuple = PLAN_BATCHES, sync=None,
              capture=None) -> list[str]:
    """The grouped plan, the device plan eager and the device plan as a CUDA graph, samples/s per batch size.
    ``sync`` and ``capture`` default to CUDA's (tests give a stand-in device theirs)."""
    import torch

    from augserve import Pipeline

    sync = sync or torch.cuda.synchronize
    rows = ["| preset | batch | grouped plan | device plan, eager | device plan, CUDA graph | graph x grouped |",
            "|---|---:|---:|---:|---:|---:|"]
    for preset, side in presets.items():
        plans = [Pipeline.from_spec(preset, execution=plan) for plan in ("grouped", "device")]
        for batch in batches:
            try:
                rows.append(f"| {preset} | {batch} | {_plan_row(*plans, batch, side, repeats, sync, capture)} |")
            except Exception as error:  # noqa: BLE001 - one row's failure is its row; the others still run
                rows.append(f"| {preset} | {batch} | {failed(error)} | | | |")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the row's batch and graphs are gone with its call
    return rows


def _plan_row(grouped, eager, batch: int, side: int | None, repeats: int, sync, capture) -> str:
    """One row's rates; a graph column whose capture failed reads the eager runs it fell back to, and says so."""
    import torch

    from augserve.server.graphs import CudaGraphs
    from augserve.server.metrics import Metrics

    device = torch.device("cuda")
    x = preset_input(eager.modality, batch, side).to(device)
    metrics = Metrics(device)
    graphs = CudaGraphs(device, metrics, capture=capture)
    rates = [_samples_per_second(run, batch, repeats, sync) for run in (
        lambda: grouped(x, seed=0), lambda: eager(x, seed=0),
        lambda: graphs.run(eager, eager.device_call(x, seed=0)))]
    replayed = metrics.registry.get_sample_value("augserve_cuda_graphs_total", {"outcome": "replayed"})
    graph = f"{rates[2]:,.0f}" if replayed else f"{rates[2]:,.0f} (eager: the capture failed)"
    return f"{rates[0]:,.0f} | {rates[1]:,.0f} | {graph} | {rates[2] / rates[0]:.2f}x"


def preset_input(modality: str, samples: int, side: int | None):
    """A batch a preset of ``modality`` takes: the sample photos (``side`` square, repeated), or seeded noise
    shaped as log-mel spectrograms, 3-channel series or 1 s of 16 kHz audio."""
    import torch

    from augserve.photos import load_images

    if modality == "image":
        photos, _ = load_images(None, side)
        return photos.repeat(-(-samples // len(photos)), 1, 1, 1)[:samples]
    shapes = {"spectrogram": (80, 300), "timeseries": (3, 500), "waveform": (16000,)}
    if modality not in shapes:
        raise ValueError(f"no example input for {modality!r} presets: add its shape to preset_input")
    return torch.randn(samples, *shapes[modality], generator=torch.Generator().manual_seed(0))


def same_sample_rows(samples: int = 32, side: int = 240) -> list[str]:
    """Per preset, the share of samples the GPU (device plan) gives bit for bit as the CPU (grouped plan)."""
    from augserve import PRESETS, Pipeline

    rows = ["| preset | samples | bit-identical on CPU and GPU |", "|---|---:|---:|"]
    for preset in PRESETS:
        try:
            pipe = Pipeline.from_spec(preset)
            x = preset_input(pipe.modality, samples, side)
            cpu, gpu = pipe(x, seed=3).x, pipe(x.to("cuda"), seed=3).x.cpu()
            same = (cpu == gpu).flatten(1).all(dim=1).float().mean()
            rows.append(f"| {preset} | {len(x)} | {same:.1%} |")
        except Exception as error:  # noqa: BLE001 - one preset's failure is its row; the others still run
            rows.append(f"| {preset} | {samples} | {failed(error)} |")
    return rows


def bench_rows(repeats: int) -> list[str]:
    """A short ``augserve bench --device cuda`` of a few cases, each built alone (``--only``)."""
    header: list[str] = []
    rows: list[str] = []
    for case in BENCH_CASES:
        try:
            result = subprocess.run([sys.executable, "-m", "augserve.cli", "bench", "--device", "cuda", "--repeats",
                                     str(repeats), "--only", case], capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as error:
            rows.append(f"| {case} | {failed(error)} |")
            continue
        table = [line for line in result.stdout.splitlines() if line.startswith("|")]
        header = header or table[:2]
        rows += table[2:] if result.returncode == 0 else [f"| {case} | failed: {result.stderr.strip()[-300:]} |"]
    return header + rows


def failed(error: BaseException) -> str:
    """What stopped a row or section, on one line for the results; its traceback goes to stderr."""
    traceback.print_exception(error, file=sys.stderr)
    return f"failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"


def guarded(section, *args) -> list[str]:
    """A section's lines, or what stopped it: a lent GPU's minutes still give every other section."""
    try:
        return section(*args)
    except Exception as error:  # noqa: BLE001 - written into the results, the next section runs
        return [f"{section.__name__} {failed(error)}"]


def write_section(path: str, lines: list[str], heading: str = SECTION) -> None:
    """Replace the ``heading`` section of the results file (up to the next '## ' heading), or add it before the
    generated bench table."""
    try:
        with open(path) as existing:
            text = existing.read()
    except FileNotFoundError:
        text = "# Benchmarks\n\n"
    section = "\n".join([heading, "", *lines, ""]) + "\n"
    pattern = re.compile(rf"{re.escape(heading)}\n.*?(?=^## |^<!-- bench table|\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    elif "<!-- bench table" in text:
        head, marker, tail = text.partition("<!-- bench table")
        text = f"{head}{section}\n{marker}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{section}"
    with open(path, "w") as results:
        results.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m augserve.tools.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/RESULTS.md", help="results file to write (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="bench rounds per case (default: %(default)s)")
    parser.add_argument("--test-seconds", type=float, default=240, help="bound on the tests (default: %(default)s)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; run it on a machine with one", file=sys.stderr)
        return 2
    started = time.monotonic()
    lines: list[str] = []

    def add(*more: str) -> None:  # written as each section ends: a run cut off keeps what it measured
        lines.extend(more)
        write_section(args.out, lines)
        print("\n".join(more), flush=True)

    add(f"{time.strftime('%Y-%m-%d')}: " + "; ".join(versions()), "")
    add("Tests:", "", run_tests(args.test_seconds))
    add("", "CPU against CUDA, one op at a time:", "", *guarded(difference_table))
    add("", "Both plans on the device, samples/s (the sample photos, 3xSxS uint8: S 240 imagenet, 32 cifar; "
        "sound-classify: 1 s of 16 kHz noise):", "", *guarded(plan_rows, args.repeats))
    add("", "The same (seed, key) on the CPU (grouped plan) and the GPU (device plan):", "",
        *guarded(same_sample_rows))
    add("", "Bench on the device (samples/s; ratios against each case's first row):", "",
        *guarded(bench_rows, args.repeats))
    add("", f"The whole check took {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
