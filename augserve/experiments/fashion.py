"""``augserve train --dataset fashion-mnist``: do the regularizers generalize on 1,000 Fashion-MNIST images,
with the augmentation done by a real server and the batches read by ``RemoteDataset``?

Per seed: 100 training images per class drawn by the seed, of which 10 per class are the validation split
(the recipe and the adaptive strength read it; the test set never is). The rest is written once as a
served PNG class folder (what ``augserve datasets pack`` packs into shards), served by an ``augserve
serve`` process of its own, and streamed by ``RemoteDataset``: the server decodes, crops, flips and
erases; the loop applies decoupled weight decay and label smoothing. Configurations: plain (the
same images unaugmented, no decay, no smoothing), regularized at strength 1, and regularized with
``AdaptiveStrength``. Test accuracy is on all 10,000 test images. Before training, the first served
epoch is checked against the same pipeline run in this process: bit for bit, by replay.
"""

from __future__ import annotations

import functools
import json
import pathlib
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from augserve.client.loader import IndexedDataset, RemoteAugment
from augserve.experiments.archives import ImageSplit, load_fashion_mnist
from augserve.experiments.runs import run_all, without_history, write_json
from augserve.experiments.series import ADAPTIVE, VIEW_SEED, verdicts
from augserve.pipeline import Pipeline
from augserve.random import sample_keys
from augserve.trainer.adaptive import AdaptiveStrength, chance_accuracy
from augserve.trainer.decay import param_groups
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import (History, kept_epoch_table, mean_sd_header, percent_mean_sd, plot_learning_curves,
                                      seeds_text)
from augserve.trainer.trainer import Trainer

# Chosen before any run, from the calibration in the issue that asked for this experiment (a padded crop,
# flips and erasing helped at 400 epochs; mixup/cutmix and dropout underfit at this budget). resize fixes
# the size of the served files, as an encoded-image pipeline must start (a no-op on 28x28).
FASHION_PIPELINE = [
    {"op": "resize", "size": [28, 28]},
    {"op": "random_crop", "size": 28, "padding": 2},
    {"op": "hflip"},
    {"op": "random_erasing", "p": 0.25},
]
CONFIGURATIONS = ("plain", "strength 1", "adaptive")  # the default; any "strength S" and "adaptive views" also run
# The recipes the development split chooses among (the test set never): the first round's, the automated
# policies with a padded crop and flips, a few pixels and degrees of affine, each with erasing at p 0.5, and
# TrivialAugment with mixup/cutmix (labels mixed by the server).
_CROP_FLIP = [{"op": "resize", "size": [28, 28]}, {"op": "random_crop", "size": 28, "padding": 2}, {"op": "hflip"}]
_ERASE = {"op": "random_erasing", "p": 0.5}
CANDIDATES = {
    "crop-flip-erase": FASHION_PIPELINE,
    "trivial": [*_CROP_FLIP, {"op": "trivial_augment"}, _ERASE],
    "randaug": [*_CROP_FLIP, {"op": "rand_augment", "n": 2, "m": 9}, _ERASE],
    "affine": [{"op": "resize", "size": [28, 28]}, {"op": "random_affine", "degrees": 10, "translate": [0.1, 0.1]},
               {"op": "hflip"}, _ERASE],
    "trivial-mix": [*_CROP_FLIP, {"op": "trivial_augment"}, _ERASE,
                    {"op": "mix", "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 0.5}],
}
DEVELOPMENT_SEED = 1 << 41  # draws the development split, the same for every seed


@dataclass(frozen=True)
class FashionRecipe:
    per_class: int = 100  # training images per class (of which val_per_class are the validation split)
    val_per_class: int = 10
    development_per_class: int = 500  # held out of every seed's draw: the recipes are chosen on these
    pipeline: tuple = tuple(FASHION_PIPELINE)  # what the server does to the regularized runs' images
    epochs: int = 200
    batch_size: int = 100
    learning_rate: float = 3e-3  # AdamW, one-cycle over the budget
    weight_decay: float = 0.05  # regularized runs only, on conv/linear weights
    label_smoothing: float = 0.1
    adaptive: tuple = (("target_gap", 0.05), ("step", 0.05), ("start", 0.5), ("limits", (0.0, 2.0)), ("ema", 0.8))
    # "adaptive views": the strength at which augmented validation views score this share of the clean ones
    adaptive_views: tuple = (("target_ratio", 0.9), ("passes", 4), ("step", 0.05), ("start", 0.5),
                             ("limits", (0.0, 2.0)), ("ema", 0.8))


RECIPE = FashionRecipe()


def fashion_cnn(num_classes: int = 10, width: int = 32) -> nn.Module:
    """Three conv-BN-ReLU blocks (two pooled), global average pooling and a linear classifier, for 3x28x28."""
    layers: list[nn.Module] = []
    for c_in, c_out, pool in ((3, width, False), (width, 2 * width, True), (2 * width, 4 * width, True)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if pool else []
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey as the (N, 3, H, W) RGB the server decodes a grey PNG to."""
    return images.expand(-1, 3, -1, -1).contiguous()


def _development_index(split: ImageSplit, recipe: FashionRecipe) -> torch.Tensor:
    """The training images of the development split: ``development_per_class`` per class, one draw for all seeds."""
    y = split.train.tensors[1]
    generator = torch.Generator().manual_seed(DEVELOPMENT_SEED)
    chosen = []
    for label in range(split.num_classes):
        members = torch.nonzero(y == label).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:recipe.development_per_class]])
    return torch.cat(chosen).sort().values


def development_split(split: ImageSplit, recipe: FashionRecipe = RECIPE) -> TensorDataset:
    """The images recipes are scored on while they are chosen; no seed's fit or validation images are among them."""
    index = _development_index(split, recipe)
    return TensorDataset(split.train.tensors[0][index], split.train.tensors[1][index])


def draw_subset(split: ImageSplit, seed: int, recipe: FashionRecipe = RECIPE) -> tuple[TensorDataset, TensorDataset]:
    """(fit, validation) drawn by ``seed``: ``per_class`` training images per class outside the development split,
    ``val_per_class`` of them held."""
    x, y = split.train.tensors
    generator = torch.Generator().manual_seed(seed)
    available = torch.ones(len(y), dtype=torch.bool)
    available[_development_index(split, recipe)] = False
    fit, val = [], []
    for label in range(split.num_classes):
        members = torch.nonzero((y == label) & available).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:recipe.per_class]]
        val.append(chosen[:recipe.val_per_class])
        fit.append(chosen[recipe.val_per_class:])
    fit_index, val_index = torch.cat(fit).sort().values, torch.cat(val).sort().values
    return TensorDataset(x[fit_index], y[fit_index]), TensorDataset(x[val_index], y[val_index])


def write_png_folder(data: TensorDataset, folder: pathlib.Path) -> None:
    """A served class folder: ``class<k>/<n>.png``, grey PNGs, in index order within each class."""
    from PIL import Image

    x, y = data.tensors
    for n, (image, label) in enumerate(zip(x, y.tolist())):
        path = folder / f"class{label}" / f"{n:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(path)


def served_order(data: TensorDataset) -> TensorDataset:
    """The samples in the order the server indexes the folder ``write_png_folder`` wrote (class, then name)."""
    x, y = data.tensors
    order = torch.tensor(sorted(range(len(y)), key=lambda n: (f"class{int(y[n])}", f"{n:05d}")))
    return TensorDataset(x[order], y[order])


class ServedFolders:
    """``augserve serve`` in a process of its own, serving each seed's fit images as ``fashion-<seed>``."""

    def __init__(self, folders: dict[str, pathlib.Path], work: pathlib.Path, start_timeout: float = 120.0):
        import socket

        from augserve.client import Client
        from augserve.runtime import augserve_command

        config = work / "serve.yaml"
        config.write_text("datasets:\n" + "".join(f"  {name}: {{type: folder, path: {folder}}}\n"
                                                  for name, folder in folders.items()))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.target = f"127.0.0.1:{port}"
        self.process = subprocess.Popen(augserve_command("serve", "--port", str(port), "--metrics-port", "0",
                                                         "--config", str(config), "--device", "cpu"),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout
        with Client(self.target, timeout=5, failovers=0, retries=1, shared_memory=False) as client:
            while True:
                try:
                    client.server_info()
                    return
                except Exception:  # noqa: BLE001 - not up yet
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        self.close()
                        raise RuntimeError(f"the augserve server for {', '.join(folders)} did not start") from None
                    time.sleep(0.5)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def replays_in_process(client, name: str, fit: TensorDataset, seed: int, batch_size: int,
                       steps: list = FASHION_PIPELINE) -> tuple[int, int]:
    """(batches equal bit for bit, batches) of the served epoch 0 of ``steps`` against the same steps run here on
    the same images with the keys the server gives them."""
    pipeline = Pipeline.from_spec(list(steps))
    x = _rgb(served_order(fit).tensors[0])
    equal = total = 0
    for batch in client.stream_dataset(name, list(steps), batch_size, seed=seed, epoch=0):
        indices = torch.from_numpy(batch.indices)
        local = pipeline(x[indices], seed=seed, keys=sample_keys(indices, 0)).x
        equal += int(np.array_equal(np.asarray(batch.x), local.numpy()))
        total += 1
    return equal, total


class _NextEpoch:
    """Callback: the served dataset streams the next epoch (another shuffle, other draws) after each one."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, trainer, record) -> None:
        self.dataset.set_epoch(record.epoch + 1)


def run_fashion(split: ImageSplit, seed: int, configuration: str, *, target: str | None,
                recipe: FashionRecipe = RECIPE, development: bool = False, progress: bool = False) -> dict:
    """One run; ``target`` serves ``fashion-<seed>`` (the augmented configurations read it). A recipe with
    no validation images per class trains without a validation split. ``development``: scored on the
    development split (``development_accuracy``), the test set left untouched."""
    fit, val = draw_subset(split, seed, recipe)
    regularized = configuration != "plain"
    torch.manual_seed(seed)
    model = fashion_cnn(split.num_classes)
    optimizer = torch.optim.AdamW(param_groups(model, recipe.weight_decay if regularized else 0.0),
                                  lr=recipe.learning_rate)
    steps = recipe.epochs * -(-len(fit.tensors[1]) // recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.learning_rate, total_steps=steps)

    def loader(data: TensorDataset, shuffle: bool = False, indexed: bool = False) -> DataLoader:
        rgb = TensorDataset(_rgb(data.tensors[0]), data.tensors[1])
        return DataLoader(IndexedDataset(rgb) if indexed else rgb, batch_size=recipe.batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(seed))

    callbacks, adaptive = [], None
    if regularized:
        from augserve.client import Client, RemoteDataset

        client = Client(target, timeout=600)
        served = RemoteDataset(client, f"fashion-{seed}", list(recipe.pipeline), recipe.batch_size, seed=seed,
                               strength=None if configuration in ADAPTIVE else float(configuration.split()[1]))
        train = DataLoader(served, batch_size=None)
        callbacks.append(_NextEpoch(served))
        if configuration == "adaptive":
            adaptive = AdaptiveStrength(served, **dict(recipe.adaptive))
        elif configuration == "adaptive views":  # the validation images augmented here, by the seed's second stream
            views = RemoteAugment(loader(val, indexed=True), client, list(recipe.pipeline), seed=seed + VIEW_SEED,
                                  num_classes=split.num_classes)
            adaptive = AdaptiveStrength(served, views=views, chance=chance_accuracy(val.tensors[1]),
                                        **dict(recipe.adaptive_views))
        callbacks += [adaptive] if adaptive else []
        loss = SoftTargetCrossEntropy(label_smoothing=recipe.label_smoothing)
    else:
        train, loss = loader(fit, shuffle=True), SoftTargetCrossEntropy()
    trainer = Trainer(model, optimizer, loss, device="cpu", scheduler=scheduler, callbacks=callbacks, progress=progress)
    started = time.perf_counter()
    # seed 0's runs are drawn as curves: they also score the clean fit images after every epoch
    history = trainer.fit(train, loader(val) if len(val) else None, epochs=recipe.epochs,
                          train_eval=loader(fit) if seed == 0 else None)
    history.augmented = regularized
    _, train_accuracy = trainer.evaluate(loader(fit))
    scored = "development_accuracy" if development else "test_accuracy"
    _, accuracy = trainer.evaluate(loader(development_split(split, recipe) if development else split.test))
    return {"seed": seed, "configuration": configuration, "fit_images": len(fit), "epochs": len(history.records),
            "train_accuracy": train_accuracy, "val_accuracy": history.records[-1].val_accuracy,
            scored: accuracy, "seconds": time.perf_counter() - started,
            "mean_strength": None if adaptive is None else adaptive.mean_strength,
            "at_limit": None if adaptive is None else adaptive.at_limit,
            "history": history}


def summary_table(runs: list[dict], configurations: tuple[str, ...]) -> list[str]:
    """Per configuration: test accuracy (mean ± sd over seeds, or the one seed's), the clean fit images' and
    validation accuracy at the last epoch."""
    spread = mean_sd_header(len({r["seed"] for r in runs}))
    lines = [f"| configuration | test acc %{spread} | per seed | train acc % (clean){spread} | "
             f"val acc % (clean){spread} |", "|---|---:|---|---:|---:|"]
    for config in configurations:
        chosen = sorted((r for r in runs if r["configuration"] == config), key=lambda r: r["seed"])
        name = config + (f" (mean strength {statistics.mean(r['mean_strength'] for r in chosen):.2f})"
                         if config in ADAPTIVE else "")
        per_seed = " ".join(f"{100 * r['test_accuracy']:.1f}" for r in chosen)
        lines.append(f"| {name} | {percent_mean_sd([r['test_accuracy'] for r in chosen])} | {per_seed} | "
                     f"{percent_mean_sd([r['train_accuracy'] for r in chosen])} | {percent_mean_sd([r['val_accuracy'] for r in chosen])} |")
    return lines


def curves_text(curves: dict[str, History]) -> list[str]:
    """What the learning-curve PNG shows, and the numbers its dots mark."""
    return ["Learning curves (seed 0): `learning_curves.png` (its data: `learning_curves.json`). Accuracy on the "
            "training batches as trained on (served, augmented, for strength 1 and adaptive) is drawn dotted beside "
            "the clean fit images (solid) and validation (dashed); the dots mark the last epoch, whose weights each "
            "run kept, and are these numbers (the tables' train and val accuracies are the clean ones):", "",
            *kept_epoch_table(curves)]


def serve_seeds(split: ImageSplit, seeds: int, recipe: FashionRecipe, out: pathlib.Path) -> ServedFolders:
    """Each seed's fit images written afresh under ``out/served`` and served as ``fashion-<seed>``."""
    import shutil

    folders = {f"fashion-{seed}": out / "served" / f"seed{seed}" for seed in range(seeds)}
    for seed, folder in enumerate(folders.values()):
        shutil.rmtree(folder, ignore_errors=True)  # another recipe or draw may have written it
        write_png_folder(draw_subset(split, seed, recipe)[0], folder)
    return ServedFolders(folders, out)


def _development_run(split: ImageSplit, seed: int, name: str, *, target: str, recipe: FashionRecipe) -> dict:
    """plain, or candidate ``name`` at strength 1 with the regularized runs' decay and smoothing, scored on the
    development split."""
    if name == "plain":
        return run_fashion(split, seed, "plain", target=target, recipe=recipe, development=True)
    run = run_fashion(split, seed, "strength 1", target=target, development=True,
                      recipe=replace(recipe, pipeline=tuple(CANDIDATES[name])))
    return {**run, "configuration": name}


def run_fashion_development(*, out: str | pathlib.Path, seeds: int = 2, epochs: int | None = None,
                            candidates: tuple[str, ...] = tuple(CANDIDATES), recipe: FashionRecipe = RECIPE,
                            root: str | None = None, progress: bool = True, resume: bool = False) -> str:
    """Plain and each candidate recipe per seed on the seed's fit images, scored on the development split (the
    test set is not read); writes summary.md and results.json (as each run finishes); returns the summary."""
    unknown = [name for name in candidates if name not in CANDIDATES]
    if seeds < 1 or (epochs is not None and epochs < 1) or unknown or not candidates:
        raise ValueError(f"expected --seeds >= 1, --epochs >= 1 and recipes among {', '.join(CANDIDATES)}, got "
                         f"{seeds}, {epochs}, {', '.join(candidates) or 'none'}")
    recipe = recipe if epochs is None else replace(recipe, epochs=epochs)
    split = load_fashion_mnist(root)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    server = serve_seeds(split, seeds, recipe, out)
    try:
        names = ("plain", *candidates)
        calls = [functools.partial(_development_run, split, seed, name, target=server.target, recipe=recipe)
                 for seed in range(seeds) for name in names]
        header = {"recipe": {k: v for k, v in asdict(recipe).items() if k != "pipeline"},  # the candidates' own
                  "candidates": {name: CANDIDATES[name] for name in candidates},
                  "development_images": len(development_split(split, recipe))}
        runs = run_all(calls, workers=1, results=out / "results.json", header=header, progress=progress,
                       resume=resume)
    finally:
        server.close()
    development = header["development_images"]
    lines = [f"# augserve train: Fashion-MNIST recipes on the development split, {seeds_text(seeds)}", "",
             f"`augserve train --dataset fashion-mnist-dev --seeds {seeds} --epochs {recipe.epochs} --recipes "
             f"{','.join(candidates)}`", "",
             f"Per seed, the {recipe.per_class - recipe.val_per_class} fit images per class the test runs train on "
             f"(the same draw); every run scored on the development split: {development:,} training images "
             f"({recipe.development_per_class} per class) no seed draws. The test set is not read. plain and the "
             f"candidates as in the test runs (a candidate: its pipeline served at strength 1, decay "
             f"{recipe.weight_decay:g}, label smoothing {recipe.label_smoothing:g}), {recipe.epochs} epochs.", "",
             *development_table(runs, names), ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary


def development_table(runs: list[dict], names: tuple[str, ...]) -> list[str]:
    """Per recipe: development accuracy (mean ± sd, per seed), its difference from plain and the seeds it wins;
    the candidates' pipelines below."""
    def accuracies(name: str) -> list[float]:
        return [r["development_accuracy"] for r in sorted(runs, key=lambda r: r["seed"]) if r["configuration"] == name]

    plain = accuracies("plain")
    spread = mean_sd_header(len(plain))
    lines = [f"| recipe | development acc %{spread} | per seed | vs plain (points) | seeds better than plain |",
             "|---|---:|---|---:|---:|"]
    for name in names:
        mine = accuracies(name)
        versus = "" if name == "plain" else f"{100 * (statistics.mean(mine) - statistics.mean(plain)):+.1f}"
        wins = "" if name == "plain" else f"{sum(a > b for a, b in zip(mine, plain))} of {len(plain)}"
        lines.append(f"| {name} | {percent_mean_sd(mine)} | {' '.join(f'{100 * a:.1f}' for a in mine)} | {versus} | "
                     f"{wins} |")
    best = max(names[1:], key=lambda name: statistics.mean(accuracies(name)))
    lines += ["", f"Highest mean development accuracy: {best}.", "",
              *(f"- {name}: `{json.dumps(CANDIDATES[name])}`" for name in names[1:])]
    return lines


def run_fashion_experiments(*, out: str | pathlib.Path, seeds: int = 5, epochs: int | None = None,
                            configurations: tuple[str, ...] = CONFIGURATIONS, recipe: FashionRecipe = RECIPE,
                            root: str | None = None, progress: bool = True, resume: bool = False) -> str:
    """Every seed x configuration ('plain', 'strength S', 'adaptive', 'adaptive views'), one after another (each
    run takes both cores); writes summary.md, results.json (as each run finishes) and learning_curves.png under
    ``out``; returns the summary."""
    unknown = [c for c in configurations if c not in ("plain", *ADAPTIVE) and not c.startswith("strength ")]
    if seeds < 1 or (epochs is not None and epochs < 1) or unknown or configurations[:1] != ("plain",) \
            or len(configurations) < 2:
        raise ValueError(f"expected --seeds >= 1, --epochs >= 1 and configurations plain, then strength S, adaptive "
                         f"or adaptive views (at least one); got {seeds}, {epochs}, {', '.join(configurations)}")
    recipe = recipe if epochs is None else replace(recipe, epochs=epochs)
    for config in configurations:  # strengths the pipeline cannot take, refused before any work
        if config.startswith("strength "):
            try:
                strength = float(config.removeprefix("strength "))
            except ValueError:
                raise ValueError(f"{config!r}: expected strength and a number") from None
            Pipeline.from_spec(list(recipe.pipeline)).at_strength(strength)
    split = load_fashion_mnist(root)
    out = pathlib.Path(out)
    server = serve_seeds(split, seeds, recipe, out)
    try:
        from augserve.client import Client

        with Client(server.target, timeout=600) as client:
            replay = [replays_in_process(client, f"fashion-{seed}", served_order(draw_subset(split, seed, recipe)[0]),
                                         seed, recipe.batch_size, recipe.pipeline) for seed in range(seeds)]
        calls = [functools.partial(run_fashion, split, seed, config, target=server.target, recipe=recipe)
                 for seed in range(seeds) for config in configurations]
        runs = run_all(calls, workers=1, results=out / "results.json", progress=progress, resume=resume)
    finally:
        server.close()
    curves: dict[str, History] = {r["configuration"]: r["history"] for r in runs if r["seed"] == 0}
    plot_learning_curves(curves, out / "learning_curves.png",
                         f"Fashion-MNIST, {(recipe.per_class - recipe.val_per_class) * split.num_classes} fit images, "
                         "seed 0")
    equal, total = sum(e for e, _ in replay), sum(t for _, t in replay)
    strengths = [c.removeprefix("strength ") for c in configurations if c.startswith("strength ")]
    adaptive = {(): "none", ADAPTIVE[:1]: "gap", ADAPTIVE[1:]: "views", ADAPTIVE: "both"}[
        tuple(c for c in ADAPTIVE if c in configurations)]
    setting = {name: ", ".join(f"{k}={v}" for k, v in values)
               for name, values in (("adaptive", recipe.adaptive), ("adaptive views", recipe.adaptive_views))}
    described = {"adaptive": f"adaptive: regularized with `AdaptiveStrength({setting['adaptive']})` (the gap read "
                             "from the served batches). ",
                 "adaptive views": f"adaptive views: regularized with `AdaptiveStrength(views=..., "
                                   f"{setting['adaptive views']})`: the signal is accuracy on augmented views of the "
                                   "validation images (the same pipeline at the strength just trained with, other "
                                   "draws each pass) over clean validation accuracy, both above chance (the "
                                   "split's largest class share). "}
    lines = [f"# augserve train: Fashion-MNIST, {recipe.per_class * 10} training images, {seeds_text(seeds)}", "",
             f"`augserve train --dataset fashion-mnist --seeds {seeds} --epochs {recipe.epochs} --strengths "
             f"{','.join(strengths) or 'none'} --adaptive {adaptive}{_recipes_flag(recipe)}`",
             "", f"Per seed, {recipe.per_class} training images per class drawn by the seed; {recipe.val_per_class} "
             "per class of them are the validation split, the rest is fit on. Every run: a 3-conv CNN, AdamW (lr "
             f"{recipe.learning_rate:g}, one-cycle), batch {recipe.batch_size}, {recipe.epochs} epochs. plain: the fit "
             "images as they are, no decay, no smoothing. regularized: the fit images served as a PNG folder by an "
             f"`augserve serve` process and streamed by `RemoteDataset` through `{json.dumps(list(recipe.pipeline))}` at "
             f"the strength named, decay {recipe.weight_decay:g} on conv/linear weights, label smoothing "
             f"{recipe.label_smoothing:g}. " + "".join(described[config] for config in ADAPTIVE if config in configurations)
             + "Test accuracy on all 10,000 test images.", "",
             f"Replay: the first served epoch of every seed against the same pipeline in process: {equal} of {total} "
             "batches bit for bit.", "", *summary_table(runs, configurations), "",
             *verdicts(runs, list(configurations)), "", *curves_text(curves), ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary


def _recipes_flag(recipe: FashionRecipe) -> str:
    """The ``--recipes`` that serves ``recipe``'s pipeline (none for the default, crop-flip-erase)."""
    name = next((name for name, steps in CANDIDATES.items() if tuple(steps) == recipe.pipeline), None)
    return "" if name in (None, "crop-flip-erase") else f" --recipes {name}"


def run_fashion_reference(*, out: str | pathlib.Path, seeds: int = 1, epochs: int | None = None,
                          root: str | None = None, progress: bool = True) -> str:
    """The reference row: plain on all 60,000 training images (no validation split, nothing served), to read
    the 1,000-image runs against; writes summary.md, results.json and learning_curves.png under ``out``."""
    split = load_fashion_mnist(root)
    per_class = int(torch.bincount(split.train.tensors[1]).max())
    recipe = FashionRecipe(per_class=per_class, val_per_class=0, development_per_class=0, epochs=epochs or 5)
    runs = [run_fashion(split, seed, "plain", target=None, recipe=recipe, progress=progress) for seed in range(seeds)]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", [without_history(r) for r in runs])
    curves = {"plain": runs[0]["history"]}
    plot_learning_curves(curves, out / "learning_curves.png",
                         f"Fashion-MNIST, all {len(split.train):,} training images, seed 0")
    accuracies = [r["test_accuracy"] for r in runs]
    lines = [f"# augserve train: Fashion-MNIST, all {len(split.train):,} training images (the reference row)", "",
             f"`augserve train --dataset fashion-mnist-60k --seeds {seeds} --epochs {recipe.epochs}`", "",
             f"plain as in the 1,000-image experiment (the same 3-conv CNN, AdamW lr {recipe.learning_rate:g} "
             f"one-cycle, batch {recipe.batch_size}, no decay, no smoothing, no augmentation) on every training "
             f"image, {recipe.epochs} epochs ({recipe.epochs * len(split.train) // recipe.batch_size:,} steps). Test "
             "accuracy on all 10,000 test images.", "",
             f"| configuration | test acc %{mean_sd_header(seeds)} | per seed | train acc % (clean){mean_sd_header(seeds)} "
             "| minutes per run |",
             "|---|---:|---|---:|---:|",
             f"| plain, {len(split.train):,} images | {percent_mean_sd(accuracies)} | "
             f"{' '.join(f'{100 * a:.1f}' for a in accuracies)} | "
             f"{percent_mean_sd([r['train_accuracy'] for r in runs])} | "
             f"{statistics.mean(r['seconds'] for r in runs) / 60:.0f} |", "",
             *curves_text(curves), ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary)
    return summary
