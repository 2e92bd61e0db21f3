"""Encoded images in the engine: headers, decoding of every kind, first steps, replay, refusals."""

import numpy as np
import pytest
import torch
from image_files import image_kinds, pillow_rgb, with_size
from torchvision.io import ImageReadMode, decode_image

from augserve.encoded import EncodedBatch, HeaderError, read_header
from augserve.pipeline import Pipeline

RECIPE = [{"op": "random_resized_crop", "size": [64, 48]}, {"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
FIRST_STEPS = {
    "random_resized_crop": [{"op": "random_resized_crop", "size": 56, "scale": [0.3, 1.0]}],
    "resize to [h, w]": [{"op": "resize", "size": [40, 72]}],
    "resize + center_crop": [{"op": "resize", "size": 64}, {"op": "center_crop", "size": [56, 60]}],
}


@pytest.fixture(scope="module")
def kinds() -> dict[str, bytes]:
    return image_kinds()


@pytest.fixture(scope="module")
def files(kinds) -> list[bytes]:
    return list(kinds.values())


def _alone(file: bytes) -> torch.Tensor:
    """The file decoded on its own, by torchvision's decoder directly: a (1, 3, H, W) dense batch."""
    data = torch.frombuffer(bytearray(file), dtype=torch.uint8)
    pixels = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=file[:2] == b"\xff\xd8")
    if pixels.dtype != torch.uint8:
        pixels = (pixels.to(torch.int32) >> 8).to(torch.uint8)
    return pixels[None]


def test_headers_give_the_displayed_size_of_every_kind(kinds):
    sizes = set()
    for kind, file in kinds.items():
        header = read_header(file)
        assert (header.height, header.width) == pillow_rgb(file).shape[:2], kind
        assert header.format == kind.split()[0]
        sizes.add((header.height, header.width))
    assert len(sizes) >= 5


def test_every_kind_decodes_to_what_pillow_shows(kinds, files):
    batch = EncodedBatch(files)
    for index, (kind, file) in enumerate(kinds.items()):
        pixels = batch.decode(index)
        assert pixels.dtype == torch.uint8 and pixels.shape[0] == 3, kind
        assert np.array_equal(pixels.permute(1, 2, 0).numpy(), pillow_rgb(file)), kind


@pytest.mark.parametrize("first", list(FIRST_STEPS))
def test_each_sample_equals_its_file_alone_as_a_dense_batch_of_one(files, first):
    pipe = Pipeline.from_spec(FIRST_STEPS[first] + RECIPE[1:])
    keys = torch.arange(100, 100 + len(files))
    out = pipe(files, seed=7, keys=keys)
    checked = pipe.check(files)
    assert out.x.shape == checked.shape and out.x.dtype == checked.dtype == torch.uint8 and out.x.shape[0] == len(files)
    for index, file in enumerate(files):
        alone = pipe(_alone(file), seed=7, keys=keys[index:index + 1])
        assert torch.equal(out.x[index], alone.x[0]), index
        for step, step_alone in zip(out.params, alone.params):
            for name, value in step.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value[index], step_alone[name][0]), (index, step["op"], name)


def test_a_sample_replays_in_batches_of_any_size_and_order(files):
    pipe = Pipeline.from_spec(RECIPE)
    keys = torch.arange(len(files)) * 3 + 1
    whole = pipe(files, seed=11, keys=keys)
    order = [9, 2, 7]
    part = pipe([files[i] for i in order], seed=11, keys=keys[order])
    assert torch.equal(part.x, whole.x[order])
    assert torch.equal(part.params[0]["box"], whole.params[0]["box"][order])
    other = pipe(files, seed=12, keys=keys)
    assert not torch.equal(other.params[0]["box"], whole.params[0]["box"])


def test_crop_boxes_lie_inside_each_image_and_follow_the_scale(files):
    pipe = Pipeline.from_spec([{"op": "random_resized_crop", "size": 32, "scale": [0.25, 0.5]}])
    many = files * 20
    boxes = pipe(many, seed=3, keys=torch.arange(len(many))).params[0]["box"]
    sizes = EncodedBatch(many).sizes
    top, left, height, width = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= sizes[:, 0]).all() and (left + width <= sizes[:, 1]).all()
    area = (height * width).double() / (sizes[:, 0] * sizes[:, 1])
    assert area.min() > 0.25 - 0.03 and area.max() < 0.5 + 0.03


def test_labels_and_file_buffers_of_every_type(files):
    pipe = Pipeline.from_spec(RECIPE)
    as_arrays = [np.frombuffer(f, dtype=np.uint8) for f in files[:4]]
    as_views = [memoryview(f) for f in files[:4]]
    labels = torch.tensor([0, 1, 2, 1])
    a = pipe(as_arrays, labels, seed=1, num_classes=3)
    b = pipe(as_views, labels, seed=1, num_classes=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, torch.eye(3)[labels])


@pytest.mark.parametrize("steps, words", [
    ([{"op": "hflip"}, {"op": "random_resized_crop", "size": 32}], ["first step that fixes the output size",
                                                                    "step 1 (hflip)"]),
    ([{"op": "resize", "size": 32}], ["first step that fixes the output size", "resize + center_crop"]),
    ([{"op": "time_warp"}], ["for timeseries batches, not images"]),
])
def test_a_pipeline_that_does_not_fix_the_size_is_refused_naming_the_step(files, steps, words):
    pipe = Pipeline.from_spec(steps)
    for call in (lambda: pipe.check(files), lambda: pipe(files)):
        with pytest.raises(ValueError) as error:
            call()
        for word in words:
            assert word in str(error.value)


def test_bad_files_are_refused_naming_their_index(files):
    jpeg = files[0]
    cases = {
        b"GIF89a not supported here": "not a JPEG, PNG or WebP image (starts with 47 49 46",
        jpeg[:len(jpeg) // 2]: "truncated JPEG",
        jpeg[:200]: "truncated JPEG",
        files[5][:len(files[5]) - 30]: "truncated PNG",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 30: "corrupt PNG",
        b"\xff\xd8\xff\xda\x00\x02": "scan data before any frame header",
        with_size(jpeg, 100, 0): "empty image",
        files[10][:len(files[10]) // 2]: "truncated WebP",
        with_size(jpeg, 0, 100): "height defined after the first scan (DNL)",
    }
    for bad, words in cases.items():
        with pytest.raises(ValueError) as error:
            Pipeline.from_spec(RECIPE)([files[1], files[2], bad])
        assert "encoded[2]" in str(error.value) and words in str(error.value), (words, str(error.value))


def test_a_corrupt_body_behind_a_valid_header_is_refused_when_decoded(files):
    png = files[5]
    broken = png[:60] + bytes(len(png) - 72) + png[-12:]  # IHDR and IEND intact, image data zeroed
    with pytest.raises(ValueError, match=r"encoded\[1\]: corrupt png"):  # libpng's error must not kill us
        Pipeline.from_spec(RECIPE)([files[0], broken])
    jpeg = files[0]
    no_tables = jpeg[:2] + jpeg[jpeg.index(b"\xff\xc0"):]  # the frame and scan without quantization tables
    with pytest.raises(ValueError, match=r"encoded\[0\]: corrupt jpeg"):
        Pipeline.from_spec(RECIPE)([no_tables])


def test_a_decompression_bomb_is_refused_before_decoding(files):
    bomb = with_size(files[0], 40000, 40000)
    assert len(bomb) < 100_000
    with pytest.raises(ValueError, match=r"encoded\[0\]: the jpeg header declares 40000x40000 = 1600000000 pixels, "
                                         r"more than the limit of 89478485"):
        EncodedBatch([bomb])
    with pytest.raises(ValueError, match="limit of 1000 per image"):
        EncodedBatch([files[1]], max_pixels=1000)


def test_header_reader_refuses_nonsense():
    for data in (b"", b"\xff\xd8", b"\xff\xd8\xff\xc0\x00\x01", b"RIFF\x00\x00\x00\x00WEBPXXXX"):
        with pytest.raises(HeaderError):
            read_header(data)


def test_device_decode_leaves_oriented_and_refused_files_to_the_cpu_decoder(kinds, monkeypatch):
    """nvJPEG as torchvision's CUDA path behaves: EXIF orientation ignored, some valid files (CMYK) refused,
    a refusal failing the whole list call. Stood in on the CPU so the routing is checked without a GPU."""
    import augserve.encoded.batch as encoded_batch

    calls, cpu_decoder = [], encoded_batch.decode_jpeg

    def nvjpeg(files, mode, device=None, **options):
        if device is None:  # the CPU decoder's own calls
            return cpu_decoder(files, mode=mode, **options)
        calls.append(len(files))
        if any(bytes(f[:2].tolist()) == b"\xff\xd8" and b"Adobe" in bytes(f.tolist()) for f in files):
            raise RuntimeError("nvjpegDecode failed: NVJPEG_STATUS_JPEG_NOT_SUPPORTED")
        return [decode_image(f, mode=mode) for f in files]  # EXIF orientation not applied

    monkeypatch.setattr(encoded_batch, "decode_jpeg", nvjpeg)
    names = ["jpeg baseline", "jpeg cmyk", "jpeg exif rotated", "jpeg progressive", "png rgb"]
    batch = EncodedBatch([kinds[n] for n in names])
    on_device = batch.decode_jpegs_on_device()
    assert sorted(on_device) == [0, 3]  # the CMYK file refused, the oriented one never sent, the PNG not a JPEG
    assert calls == [3, 1, 1, 1]  # one list call, then each alone after the refusal
    assert read_header(kinds["jpeg exif rotated"]).orientation == 6
    for index in range(len(names)):
        pixels = on_device.get(index)
        pixels = batch.decode(index) if pixels is None else pixels
        assert torch.equal(pixels[None], _alone(kinds[names[index]])), names[index]
    jpeg = kinds["jpeg baseline"]
    corrupt = EncodedBatch([jpeg, jpeg[:2] + jpeg[jpeg.index(b"\xff\xc0"):]])  # no quantization tables

    def refuses_corrupt(files, mode, device=None, **options):
        if device is not None and any(b"\xff\xdb" not in bytes(f.tolist()) for f in files):
            raise RuntimeError("nvjpegDecode failed: NVJPEG_STATUS_BAD_JPEG")
        return nvjpeg(files, mode, device, **options)

    monkeypatch.setattr(encoded_batch, "decode_jpeg", refuses_corrupt)
    assert sorted(corrupt.decode_jpegs_on_device()) == [0]
    with pytest.raises(ValueError, match=r"encoded\[1\]: corrupt jpeg"):  # the CPU decoder names it
        corrupt.decode(1)
