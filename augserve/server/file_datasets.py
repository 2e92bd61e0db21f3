"""Datasets of image files read from disk as batches come due: class folders and WebDataset tar shards.

Only an index stays in memory: where each sample's bytes are (a file, or a member's offset and
size inside a tar shard) and its label. It is built at start-up from directory listings and tar
headers, without decoding anything; each batch's files are then read (``os.pread``) when the
batch is due, and decoded with the rest of the pipeline. A file that cannot be read or does not
start like an image is skipped with its reason; every other sample is still delivered.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import pathlib
import re
import tarfile
from dataclasses import dataclass

import numpy as np
import torch

from augserve.transport import ENCODED_SUFFIXES
from augserve.encoded import HeaderError, read_header

IMAGE_EXTENSIONS = tuple(suffix[1:] for suffix in ENCODED_SUFFIXES)  # WebDataset member extensions
_BRACES = re.compile(r"\{([^{}]*)\}")


@dataclass
class Samples:
    """What ``read`` found for a batch's indices: the readable ones and the skipped ones with reasons."""

    x: torch.Tensor | list[bytes]  # dense rows, or one encoded file per kept sample
    indices: torch.Tensor  # (kept,) int64 dataset indices
    labels: torch.Tensor  # (kept,) int64
    skipped: list[tuple[int, str]]  # (dataset index, reason)
    lengths: torch.Tensor | None = None  # (kept,) int64 valid lengths of waveform rows; None: rows are whole


class FileDataset:
    """Encoded images indexed by location: ``paths[source[i]]`` at byte ``offsets[i]``, ``sizes[i]`` long.

    A whole file has offset 0 and size -1 (read to its end).
    """

    modality = "image"

    def __init__(self, name: str, paths: list[str], source: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                 labels: torch.Tensor, num_classes: int, shards: int = 0):
        self.name, self.paths, self.shards = name, paths, shards
        self.source, self.offsets, self.sizes = source, offsets, sizes
        self.labels, self.num_classes = labels, num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, index: int) -> str:
        """The sample's file (and member offset in a shard), for logs."""
        path = self.paths[self.source[index]]
        return path if self.sizes[index] < 0 else f"{path} @ {self.offsets[index]}"

    def read(self, indices: torch.Tensor, max_pixels: int) -> Samples:
        """The batch's file bytes, each checked to start like a complete image within the pixel limit."""
        kept, files, skipped = [], [], []
        for index in indices.tolist():
            try:
                data = self._bytes(index)
                header = read_header(data)
            except (OSError, HeaderError) as error:
                skipped.append((index, _reason(error)))
                continue
            if header.height * header.width > max_pixels:
                skipped.append((index, f"{header.height}x{header.width} pixels, more than --max-pixels {max_pixels}"))
                continue
            kept.append(index)
            files.append(data)
        kept_t = torch.tensor(kept, dtype=torch.int64)
        return Samples(files, kept_t, self.labels[kept_t], skipped)

    def _bytes(self, index: int) -> bytes:
        path, offset, size = self.paths[self.source[index]], int(self.offsets[index]), int(self.sizes[index])
        if size < 0:
            return pathlib.Path(path).read_bytes()
        with open(path, "rb") as file:
            data = os.pread(file.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"{path}: member at byte {offset} cut short ({len(data)} of {size} bytes)")
        return data


def _reason(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return f"file not found: {error.filename}"
    if isinstance(error, OSError) and error.strerror:
        return f"unreadable: {error.strerror}"
    return str(error)


def index_folder(name: str, path: str) -> FileDataset:
    """One subfolder per class (torchvision's ImageFolder layout), every JPEG/PNG/WebP file in it, recursively."""
    root = pathlib.Path(path)
    if not root.is_dir():
        raise ValueError(f"dataset {name}: {root} is not a folder")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise ValueError(f"dataset {name}: {root} has no class subfolders (expected one folder per class)")
    paths, labels = [], []
    for label, class_name in enumerate(classes):
        for file in sorted((root / class_name).rglob("*")):
            if file.suffix.lower() in ENCODED_SUFFIXES and file.is_file():
                paths.append(str(file))
                labels.append(label)
    if not paths:
        raise ValueError(f"dataset {name}: no {', '.join(ENCODED_SUFFIXES)} files in the class folders of {root}")
    count = len(paths)
    return FileDataset(name, paths, np.arange(count), np.zeros(count, dtype=np.int64),
                       np.full(count, -1, dtype=np.int64), torch.tensor(labels), len(classes))


def expand_braces(pattern: str) -> list[str]:
    """``train-{000000..000002}.tar`` -> three names (zero padding kept); ``{a,b}`` lists alternatives."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[:match.start()], pattern[match.end():]
    numbers = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numbers:
        first, last = numbers.groups()
        options = [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]
    else:
        options = body.split(",")
    return [name for option in options for name in expand_braces(head + option + tail)]


def shard_paths(name: str, shards) -> list[str]:
    """A list of paths, or a brace / glob pattern, resolved to existing files (every one must exist)."""
    patterns = shards if isinstance(shards, list) else [shards]
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"dataset {name}: field 'shards': expected a path, a pattern or a list of paths, "
                         f"got {shards!r}")
    paths = []
    for pattern in patterns:
        for candidate in expand_braces(pattern):
            found = sorted(glob.glob(candidate)) if glob.has_magic(candidate) else [candidate]
            if not found or not all(os.path.isfile(p) for p in found):
                raise ValueError(f"dataset {name}: shard pattern {pattern!r}: no file {candidate!r}")
            paths.extend(found)
    return paths


def _label(data: bytes, extension: str, field: str, where: str) -> int:
    try:
        value = json.loads(data)[field] if extension == "json" else int(data.decode().strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected a non-negative integer, got {value!r}")
        return value
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where}: label: {error}") from None


def index_shards(name: str, shards, label_field: str = "label", num_classes: int | None = None) -> FileDataset:
    """WebDataset tar shards: members grouped by key (the name up to the first dot of its basename),
    an image member (jpg, jpeg, png, webp) and a label member (``cls``: an integer as text; ``json``:
    the integer in ``label_field``). Headers and label members are read; images are not."""
    paths = shard_paths(name, shards)
    tables = [_cached_shard_index(name, path, label_field) for path in paths]
    table = np.concatenate(tables)
    if not len(table):
        raise ValueError(f"dataset {name}: no image samples ({', '.join(IMAGE_EXTENSIONS)}) in {len(paths)} shard(s)")
    source = np.repeat(np.arange(len(paths)), [len(t) for t in tables])
    labels = torch.from_numpy(table[:, 2].copy())
    classes = num_classes or int(labels.max()) + 1
    if int(labels.max()) >= classes:
        raise ValueError(f"dataset {name}: label {int(labels.max())} found, but num_classes is {classes}")
    return FileDataset(name, paths, source, table[:, 0].copy(), table[:, 1].copy(), labels, classes,
                       shards=len(paths))


def cache_dir() -> pathlib.Path | None:
    """Where shard indexes are cached: $AUGSERVE_CACHE_DIR (empty: nowhere), else the user's cache folder.

    Never beside the data, which the server may only read.
    """
    chosen = os.environ.get("AUGSERVE_CACHE_DIR")
    if chosen is not None:
        return pathlib.Path(chosen) if chosen else None
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "augserve" / "index"


def _cached_shard_index(name: str, path: str, label_field: str) -> np.ndarray:
    """A shard's (offset, size, label) rows, from the cache when the shard is unchanged since it was indexed."""
    folder = cache_dir()
    status = os.stat(path)
    identity = f"{os.path.abspath(path)}:{status.st_size}:{status.st_mtime_ns}:{label_field}"
    digest = hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
    cached = None if folder is None else folder / f"{digest}.npy"
    if cached is not None and cached.is_file():
        try:
            return np.load(cached, allow_pickle=False)
        except (OSError, ValueError):
            pass  # unreadable cache entry: index again
    table = _shard_index(name, path, label_field)
    if cached is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            with open(partial, "wb") as out:
                np.save(out, table, allow_pickle=False)
            os.replace(partial, cached)
        except OSError:
            pass  # a read-only or full cache folder only costs the next start-up its header scan
    return table


def _shard_index(name: str, path: str, label_field: str) -> np.ndarray:
    """Scan one shard's tar headers: (offset, size, label) int64 rows, one per image sample, in order."""
    rows = []
    try:
        with tarfile.open(path, "r:") as archive:
            members = [m for m in archive if m.isfile()]
            for key, group in itertools.groupby(members, key=lambda m: _key(m.name)):
                parts = {_extension(m.name): m for m in group}
                image = next((parts[e] for e in IMAGE_EXTENSIONS if e in parts), None)
                label = next((e for e in ("cls", "json") if e in parts), None)
                where = f"dataset {name}: {path}: sample {key!r}"
                if image is None:
                    continue  # not an image sample (e.g. a __meta__ entry)
                if label is None:
                    raise ValueError(f"{where}: no label member (.cls or .json) beside {image.name!r}")
                value = _label(archive.extractfile(parts[label]).read(), label, label_field, where)
                rows.append((image.offset_data, image.size, value))
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"dataset {name}: {path}: not a readable tar file ({error})") from None
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _key(member: str) -> str:
    directory, _, base = member.rpartition("/")
    return f"{directory}/{base.split('.', 1)[0]}" if directory else base.split(".", 1)[0]


def _extension(member: str) -> str:
    return member.rpartition("/")[2].split(".", 1)[-1].lower()
