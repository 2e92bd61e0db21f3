"""What ``augserve datasets`` does: describe a config's datasets without serving, and pack a folder into shards."""

from __future__ import annotations

import io
import pathlib
import tarfile

import torch
from tqdm import tqdm

from augserve.server.audio_datasets import AudioDataset
from augserve.server.config import read_config_file
from augserve.server.datasets import BUILTIN, load_datasets
from augserve.server.file_datasets import FileDataset, index_folder
from augserve.server.table_datasets import TableDataset
from augserve.server.text_datasets import TextDataset


def describe(config: str, check: bool = False) -> str:
    """One line per dataset of ``config``: samples, classes, shards (built-ins by name); with ``check``,
    every file of the file datasets is read and its header checked, and each bad one is listed."""
    loaders = load_datasets(read_config_file(config).get("datasets", {}))
    lines = []
    for name, loader in sorted(loaders.items()):
        if loader is BUILTIN.get(name):
            lines.append(f"{name}: built in (loaded on first use)")
            continue
        dataset = loader()
        kind = f"{dataset.shards} tar shard(s)" if getattr(dataset, "shards", 0) else \
            "image files" if isinstance(dataset, FileDataset) else \
            f"audio files decoded in memory at {dataset.sample_rate} Hz" if isinstance(dataset, AudioDataset) else \
            dataset.describe() if isinstance(dataset, (TableDataset, TextDataset)) else \
            "in memory"
        lines.append(f"{name}: {len(dataset)} samples, {dataset.num_classes} classes, {dataset.modality}, {kind}")
        if check and isinstance(dataset, FileDataset):
            bad = _bad_files(dataset)
            lines.append(f"  header check: {len(dataset) - len(bad)} readable, {len(bad)} bad")
            lines += [f"  bad: {index} {dataset.where(index)}: {reason}" for index, reason in bad]
        if check and isinstance(dataset, AudioDataset):  # decoding read every file already
            lines.append(f"  decode check: {len(dataset) - len(dataset.unreadable)} readable, "
                         f"{len(dataset.unreadable)} bad")
            lines += [f"  bad: {index} {dataset.where(index)}: {reason}" for index, reason in
                      sorted(dataset.unreadable.items())]
    return "\n".join(lines)


def _bad_files(dataset: FileDataset) -> list[tuple[int, str]]:
    bad = []
    for start in tqdm(range(0, len(dataset), 256), desc=f"checking {dataset.name}", unit="batch", leave=False):
        bad += dataset.read(torch.arange(start, min(start + 256, len(dataset))), max_pixels=1 << 62).skipped
    return bad


def pack_folder(folder: str, out: str, samples_per_shard: int = 1000, prefix: str = "shard") -> list[pathlib.Path]:
    """Tar shards in the WebDataset layout (``<key>.<ext>`` + ``<key>.cls``) from a class folder.

    Samples keep the folder's order (classes sorted, files sorted), so dataset index i is the same
    sample in the folder and in the shards; a bad file is packed as it is and skipped when served,
    as it would be from the folder.
    """
    if samples_per_shard < 1:
        raise ValueError(f"--samples-per-shard: expected at least 1, got {samples_per_shard}")
    dataset = index_folder(folder, folder)
    target = pathlib.Path(out)
    target.mkdir(parents=True, exist_ok=True)
    count = (len(dataset) + samples_per_shard - 1) // samples_per_shard
    width = max(6, len(str(count - 1)))
    written, archive = [], None
    for index in tqdm(range(len(dataset)), desc="packing", unit="file"):
        if index % samples_per_shard == 0:
            if archive is not None:
                archive.close()
            written.append(target / f"{prefix}-{index // samples_per_shard:0{width}d}.tar")
            archive = tarfile.open(written[-1], "w", format=tarfile.USTAR_FORMAT)
        path = pathlib.Path(dataset.paths[index])
        key = f"{index:09d}"
        _add(archive, f"{key}{path.suffix.lower()}", path.read_bytes())
        _add(archive, f"{key}.cls", str(int(dataset.labels[index])).encode())
    archive.close()
    return written


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    archive.addfile(member, io.BytesIO(data))
