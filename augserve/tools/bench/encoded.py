"""Bench rows for real images in: JPEG files of ImageNet-like sizes to augmented 224x224 batches.

Every engine does the same work per epoch of the folder: read each file, decode it, crop a random
box of it resized to 224x224 (RandomResizedCrop), flip half, RandAugment n=2 m=9, uint8 out, in
batches of 64: augserve in process, DALI's CPU pipeline, a torchvision DataLoader with a worker
per core, and the service fed by DataLoader workers that only read bytes.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Callable

import torch

from augserve.tools.bench.harness import Engine
from augserve.encoded import read_header
from augserve.photos import write_imagenet_like_jpegs
from augserve.pipeline import Pipeline

FILES = 512
SIZE = 224
SPEC = [{"op": "random_resized_crop", "size": SIZE}, {"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]


class _TorchvisionFiles(torch.utils.data.Dataset):
    """What a DataLoader worker does in the usual recipe: read, decode (libjpeg-turbo or Pillow), transform."""

    def __init__(self, paths: list[pathlib.Path], decoder: str):
        from torchvision.transforms import v2

        self.paths, self.decoder = paths, decoder
        self.transform = v2.Compose([v2.RandomResizedCrop(SIZE, antialias=True), v2.RandomHorizontalFlip(),
                                     v2.RandAugment(num_ops=2, magnitude=9), v2.PILToTensor()
                                     if decoder == "pil" else v2.Identity()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        if self.decoder == "pil":
            from PIL import Image

            with Image.open(self.paths[index]) as image:
                return self.transform(image.convert("RGB")), 0
        from torchvision.io import ImageReadMode, decode_jpeg

        data = torch.frombuffer(bytearray(self.paths[index].read_bytes()), dtype=torch.uint8)
        return self.transform(decode_jpeg(data, mode=ImageReadMode.RGB)), 0


def _dali_files(folder: pathlib.Path, batch: int, on_gpu: bool) -> Engine | None:
    """DALI's own file reader, fused decode + random crop, resize, flip and auto_aug RandAugment."""
    try:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.auto_aug import rand_augment
    except ImportError:
        return None

    @pipeline_def(enable_conditionals=True, batch_size=batch, num_threads=os.cpu_count() or 1,
                  device_id=torch.cuda.current_device() if on_gpu else None, prefetch_queue_depth=1)
    def pipe():
        files, _ = fn.readers.file(file_root=str(folder), random_shuffle=False, name="files")
        images = fn.decoders.image_random_crop(files, device="mixed" if on_gpu else "cpu", output_type=types.RGB)
        images = fn.resize(images, resize_x=SIZE, resize_y=SIZE)
        images = fn.flip(images, horizontal=fn.random.coin_flip())
        return rand_augment.rand_augment(images, n=2, m=9)

    built = pipe()
    built.build()
    batches = built.epoch_size("files") // batch
    return Engine(f"DALI pipeline ({'mixed/GPU' if on_gpu else 'CPU'})", lambda: [built.run() for _ in range(batches)],
                  "readers.file + decoders.image_random_crop + resize + flip + auto_aug", batches * batch)


JPEG_CASE = (f"JPEG files in: {FILES} ImageNet-like JPEGs -> random_resized_crop {SIZE} + hflip + "
             "RandAugment n=2 m=9, uint8")
SERVED_CASE = f"served dataset: StreamDataset of the {FILES} JPEGs, same pipeline, uint8"


def encoded_cases(device: torch.device, server: Callable[[], str], wanted: Callable[[str], bool],
                  batch: int = 64) -> dict[str, list[Engine]]:
    """The rows of the 'JPEG files in' and 'served dataset' cases; the folder is made once from the shipped photos."""
    if not wanted(JPEG_CASE) and not wanted(SERVED_CASE):
        return {}
    target = server()
    from torch.utils.data import DataLoader

    from augserve.client import Client, EncodedImageFolder, RemoteAugment, collate_encoded
    from augserve.encoded import EncodedBatch

    folder = pathlib.Path(tempfile.mkdtemp(prefix="augserve-jpegs-"))
    paths = write_imagenet_like_jpegs(folder, FILES, seed=0)
    workers = os.cpu_count() or 1
    pipe = Pipeline.from_spec(SPEC)
    headers = [read_header(p.read_bytes()) for p in paths]
    encoded_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1e3
    decoded_kb = sum(3 * h.height * h.width for h in headers) / len(headers) / 1e3
    sizes = f"request {encoded_kb:.0f} KB/sample encoded vs {decoded_kb:.0f} KB decoded"

    def in_process():
        for start in range(0, len(paths), batch):
            files = [p.read_bytes() for p in paths[start:start + batch]]
            pipe(EncodedBatch(files, device=device), seed=0, keys=torch.arange(start, start + len(files)))

    def file_loader() -> DataLoader:
        return DataLoader(EncodedImageFolder(folder), batch_size=batch, num_workers=workers,
                          collate_fn=collate_encoded, persistent_workers=True)

    def torchvision_loader(decoder: str) -> DataLoader:
        return DataLoader(_TorchvisionFiles(paths, decoder), batch_size=batch, num_workers=workers,
                          persistent_workers=True)

    with_decode_jpeg, with_pillow = torchvision_loader("decode_jpeg"), torchvision_loader("pil")
    classes = len(EncodedImageFolder(folder).classes)
    over_shm = RemoteAugment(file_loader(), Client(target, timeout=600, shared_memory=True), SPEC,
                             num_classes=classes, prefetch=4)
    over_bytes = RemoteAugment(file_loader(), Client(target, timeout=600, shared_memory=False), SPEC,
                               num_classes=classes, prefetch=4)
    engines = [
        Engine("augserve in process, from bytes", in_process, f"{len(paths)} files read, decoded, augmented",
               len(paths)),
        Engine(f"torchvision DataLoader, {workers} workers, decode_jpeg", lambda: list(with_decode_jpeg),
               "decode_jpeg + RandomResizedCrop + flip + RandAugment per sample", len(paths)),
        Engine(f"torchvision DataLoader, {workers} workers, Pillow", lambda: list(with_pillow),
               "PIL open + RandomResizedCrop + flip + RandAugment on PIL images", len(paths)),
        Engine("service, shared memory", lambda: list(over_shm),
               f"DataLoader workers read bytes; RemoteAugment, 4 in flight; {sizes}", len(paths)),
        Engine("service, gRPC bytes", lambda: list(over_bytes),
               f"as above over gRPC; {sizes}; response {3 * SIZE * SIZE / 1e3:.0f} KB/sample", len(paths)),
    ]
    dali = _dali_files(folder, batch, device.type == "cuda")
    if dali is not None:
        engines.insert(1, dali)
    cases = {JPEG_CASE: engines}
    if wanted(SERVED_CASE):
        cases[SERVED_CASE] = _served_engines(folder, device, batch, engines[0],
                                             next(e for e in engines if "decode_jpeg" in e.name))
    return cases


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _served_engines(folder: pathlib.Path, device: torch.device, batch: int, in_process: Engine,
                    dataloader: Engine) -> list[Engine]:
    """StreamDataset over the folder and over the same files as 4 tar shards, with 1 and 2 clients."""
    import concurrent.futures

    from augserve.tools.bench.harness import server_process
    from augserve.client import Client
    from augserve.server.dataset_tools import pack_folder

    shards = pack_folder(str(folder), str(folder.parent / f"{folder.name}-shards"), samples_per_shard=FILES // 4)
    larger = folder.parent / f"{folder.name}-4x"
    write_imagenet_like_jpegs(larger, 4 * FILES, seed=1)
    config = folder.parent / f"{folder.name}-datasets.yaml"
    config.write_text(f"datasets:\n  folder: {{type: folder, path: {folder}}}\n"
                      f"  larger: {{type: folder, path: {larger}}}\n"
                      f"  shards: {{type: shards, shards: {[str(s) for s in shards]}}}\n")
    # As many threads as the in-process anchor: the adaptive default counts the bench's own leftovers between
    # engines (loader workers exiting) as a busy neighbour and halves them, which no training job caused here.
    target, process = server_process(["--config", str(config), "--max-batch", str(max(batch, 64)),
                                      "--device", str(device), "--threads", str(torch.get_num_threads())])
    clients = [Client(target, timeout=600) for _ in range(2)]
    rss = []
    for name in ("folder", "larger"):  # the server's memory after an epoch of a dataset and of one 4x larger
        sum(len(b.indices) for b in clients[0].stream_dataset(name, SPEC, batch))
        rss.append(_rss_mib(process.pid))
    memory = f"server RSS after an epoch: {rss[0]:.0f} MiB ({FILES} files), {rss[1]:.0f} MiB ({4 * FILES} files)"
    threads = concurrent.futures.ThreadPoolExecutor(max_workers=2)

    def epoch(name: str, count: int) -> Callable[[], object]:
        def one(shard: int) -> int:
            return sum(len(b.indices) for b in clients[shard].stream_dataset(name, SPEC, batch, shard_index=shard,
                                                                              num_shards=count))
        return lambda: list(threads.map(one, range(count)))

    return [
        Engine("augserve in process, from bytes", in_process.run, "as above", in_process.samples),
        Engine(dataloader.name, dataloader.run, dataloader.note, dataloader.samples),
        Engine("StreamDataset, folder, 1 client", epoch("folder", 1), memory, FILES),
        Engine("StreamDataset, folder, 2 clients", epoch("folder", 2), "shard k of 2 each", FILES),
        Engine("StreamDataset, 4 tar shards, 1 client", epoch("shards", 1), "WebDataset layout", FILES),
        Engine("StreamDataset, 4 tar shards, 2 clients", epoch("shards", 2), "shard k of 2 each", FILES),
    ]
