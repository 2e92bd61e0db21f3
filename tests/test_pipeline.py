"""Pipelines as data: specs, validation, per-step contracts, replay, labels and dtypes."""

import json

import numpy as np
import pytest
import torch

from augserve import PRESETS, Pipeline, SpecError

# One representative spec per op; each must keep dtype, shape and value range.
SHAPE_KEEPING = {
    "hflip": {"p": 0.5}, "vflip": {"p": 0.5},
    "random_affine": {"degrees": 20, "translate": [0.1, 0.2], "scale": [0.8, 1.2], "shear": 10},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
    "grayscale": {"p": 0.5}, "posterize": {"bits": 3}, "solarize": {"threshold": 0.6},
    "sharpness": {"factor": 3.0}, "equalize": {}, "autocontrast": {}, "invert": {},
    "rand_augment": {"n": 2, "m": 9}, "trivial_augment": {}, "auto_augment": {"policy": "cifar10"},
    "random_erasing": {"p": 0.7, "value": "random"},
}
RESIZING = {
    "random_resized_crop": ({"size": [40, 56]}, (40, 56)), "resize": ({"size": 48}, (48, 48)),
    "center_crop": ({"size": 50}, (50, 50)), "random_crop": ({"size": 64, "padding": 4}, (64, 64)),
}


IMAGE_PRESETS = sorted(name for name in PRESETS if Pipeline.from_spec(name).modality == "image")


@pytest.mark.parametrize("op", sorted(SHAPE_KEEPING))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_op_keeps_dtype_shape_and_range(photo_batch, op, dtype):
    x = photo_batch if dtype == torch.uint8 else photo_batch.float() / 255
    out = Pipeline.from_spec([{"op": op, **SHAPE_KEEPING[op]}])(x, seed=1)
    assert out.x.dtype == dtype and out.x.shape == x.shape
    if dtype == torch.uint8 or op != "random_erasing":  # float 'random' erasing is N(0, 1) noise by design
        assert out.x.float().min() >= 0 and out.x.float().max() <= (255 if dtype == torch.uint8 else 1)
    assert not torch.equal(out.x, x), f"{op} changed nothing"


@pytest.mark.parametrize("op", sorted(RESIZING))
def test_resizing_ops_produce_their_size(photo_batch, op):
    spec, size = RESIZING[op]
    out = Pipeline.from_spec([{"op": op, **spec}])(photo_batch)
    assert out.x.shape == (16, 3, *size) and out.x.dtype == torch.uint8


SPECTROGRAM_OPS = ("freq_mask", "time_mask", "spec_time_warp")
SERIES_OPS = ("jitter", "scaling", "magnitude_warp", "time_warp", "window_slice", "window_warp", "window_warp_or_slice",
              "permutation", "drift")


def _predicted_cases(photo_batch):
    odd = photo_batch[:4, :, :61, :83]
    yield from ((name, photo_batch) for name in PRESETS if Pipeline.from_spec(name).modality == "image")
    yield from ((name, torch.randn(4, 80, 300)) for name in PRESETS if Pipeline.from_spec(name).modality
                == "spectrogram")
    yield "timeseries-um", torch.randn(4, 3, 200)
    yield from (([{"op": op, **SHAPE_KEEPING.get(op, {})}], odd) for op in [*SHAPE_KEEPING, "mix", "label_smoothing"])
    yield from (([{"op": op, **spec}], odd) for op, (spec, _) in RESIZING.items())
    yield [{"op": "resize", "size": 20}], odd
    yield [{"op": "resize", "size": 20}], odd.transpose(-1, -2)
    yield [{"op": "center_crop", "size": 80}, {"op": "normalize", "mean": [0.5], "std": [0.2]}], odd
    yield from (([{"op": op}], torch.randn(3, 2, 40, 190)) for op in SPECTROGRAM_OPS)
    yield from (([{"op": op}], torch.randn(3, 2, 90)) for op in SERIES_OPS)
    yield [{"op": "log_mel", "hop_length": 123}, {"op": "time_mask", "T": 5}], torch.randn(2, 16001)
    yield [{"op": "log_mel"}], torch.randn(2, 2, 4000)


def test_check_predicts_the_output_shape_and_dtype_without_running(photo_batch):
    """The server bounds an answer's size from this before any work, so it must match what runs."""
    for spec, x in _predicted_cases(photo_batch):
        pipe = Pipeline.from_spec(spec)
        labels = torch.arange(x.shape[0]) % 3
        for out_dtype in (None, "float16"):
            checked = pipe.check(x, out_dtype)
            out = pipe(x, labels, num_classes=3, out_dtype=out_dtype)
            assert (checked.shape, checked.dtype) == (tuple(out.x.shape), out.x.dtype), spec
            assert torch.equal(pipe(checked, labels, num_classes=3).x, out.x), spec


def test_a_checked_batch_is_not_checked_again(photo_batch, monkeypatch):
    """Check once: the NaN scan and the dtype rules run in ``check``, not again when the batch runs."""
    import augserve.pipeline as pipeline_module

    pipe = Pipeline.from_spec([{"op": "hflip"}, {"op": "normalize"}])
    x = photo_batch.float() / 255
    checked = pipe.check(x)
    expected = pipe(x).x
    monkeypatch.setattr(pipeline_module, "_as_batch", lambda *a: pytest.fail("checked a checked batch again"))
    assert torch.equal(pipe(checked).x, expected)
    with pytest.raises(ValueError, match="another pipeline"):
        Pipeline.from_spec([{"op": "hflip"}])(checked)
    with pytest.raises(ValueError, match="out_dtype: a checked batch"):
        pipe(checked, out_dtype="float16")


def test_shape_checks_run_before_any_work(photo_batch):
    with pytest.raises(ValueError, match="'size' = \\[64, 64\\] is larger than the padded image \\(40x40\\)"):
        Pipeline.from_spec([{"op": "random_crop", "size": 64, "padding": 4}]).check(photo_batch[:, :, :32, :32])


def test_normalize_outputs_float_with_expected_statistics(photo_batch):
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    out = Pipeline.from_spec([{"op": "normalize", "mean": mean, "std": std}])(photo_batch)
    want = (photo_batch.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert out.x.dtype == torch.float32 and torch.allclose(out.x, want, atol=1e-5)


def test_input_is_never_modified(photo_batch):
    before = photo_batch.clone()
    as_float = photo_batch.float() / 255
    float_before = as_float.clone()
    for spec in IMAGE_PRESETS:
        pipe = Pipeline.from_spec(spec)
        pipe(photo_batch)
        pipe(as_float)
    assert torch.equal(photo_batch, before) and torch.equal(as_float, float_before)


@pytest.mark.parametrize("spec", IMAGE_PRESETS)
def test_same_seed_and_key_replay_bit_identically_in_any_batch(photo_batch, spec):
    pipe = Pipeline.from_spec(spec)
    x = photo_batch if not spec.startswith("cifar") else photo_batch[..., :40, :40]
    keys = torch.arange(100, 116)
    full = pipe(x, seed=42, keys=keys)
    order = torch.tensor([9, 3, 14, 0, 7])
    part = pipe(x[order], seed=42, keys=keys[order])
    assert torch.equal(part.x, full.x[order])
    single = pipe(x[5:6], seed=42, keys=keys[5:6])
    assert torch.equal(single.x[0], full.x[5])
    if spec != "imagenet-eval":  # the only preset without randomness
        assert not torch.equal(pipe(x, seed=43, keys=keys).x, full.x)


def test_params_record_per_sample_provenance(photo_batch):
    out = Pipeline.from_spec("imagenet-randaug")(photo_batch, seed=0)
    ops = [p["op"] for p in out.params]
    assert ops == ["random_resized_crop", "hflip", "rand_augment", "random_erasing", "normalize"]
    assert out.params[0]["box"].shape == (16, 4)
    assert out.params[2]["ops"].shape == (16, 2) and out.params[2]["values"].shape == (16, 2)
    assert out.params[2]["space"][0] == "identity"


def test_random_resized_crop_boxes_follow_torchvision_semantics(photo_batch):
    x = photo_batch.repeat(8, 1, 1, 1)
    out = Pipeline.from_spec([{"op": "random_resized_crop", "size": 32, "scale": [0.2, 0.6],
                               "ratio": [0.5, 2.0]}])(x, seed=5)
    top, left, h, w = out.params[0]["box"].T.double()
    area = h * w / (96 * 96)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 96).all() and (left + w <= 96).all()
    # rounding h and w to whole pixels moves the area a little past the requested bounds
    assert area.min() > 0.2 - 0.03 and area.max() < 0.6 + 0.03
    assert (w / h).min() > 0.5 * 0.9 and (w / h).max() < 2.0 * 1.1
    assert len(set(map(tuple, out.params[0]["box"].tolist()))) > 100


def test_random_erasing_boxes_and_values(photo_batch):
    x = photo_batch.repeat(4, 1, 1, 1)
    out = Pipeline.from_spec([{"op": "random_erasing", "p": 1.0, "value": [1, 2, 3]}])(x, seed=2)
    applied, boxes = out.params[0]["applied"], out.params[0]["box"]
    assert applied.all()
    for i in range(0, 64, 7):
        t, l, h, w = boxes[i].tolist()
        assert 0.02 * 96 * 96 - 200 <= h * w <= 0.33 * 96 * 96 + 200
        assert torch.equal(out.x[i, :, t:t + h, l:l + w], torch.tensor([1, 2, 3], dtype=torch.uint8)
                           .view(3, 1, 1).expand(3, h, w))
        outside = torch.ones(96, 96, dtype=torch.bool)
        outside[t:t + h, l:l + w] = False
        assert torch.equal(out.x[i][:, outside], x[i][:, outside])
    none = Pipeline.from_spec([{"op": "random_erasing", "p": 0.0}])(x)
    assert torch.equal(none.x, x) and not none.params[0]["applied"].any()


def test_color_jitter_draws_factors_in_range_and_order_per_sample(photo_batch):
    x = photo_batch.repeat(8, 1, 1, 1)
    out = Pipeline.from_spec([{"op": "color_jitter", "brightness": 0.3, "hue": [-0.1, 0.05]}])(x, seed=1)
    order, factors = out.params[0]["order"], out.params[0]["factors"]
    assert ((factors[:, 0] >= 0.7) & (factors[:, 0] <= 1.3)).all()
    assert ((factors[:, 3] >= -0.1) & (factors[:, 3] <= 0.05)).all()
    assert (order != 1).all() and (order != 2).all()  # contrast and saturation are off
    relative = {tuple(op for op in row if op >= 0) for row in order.tolist()}
    assert relative == {(0, 3), (3, 0)}  # brightness before hue, or after, per sample


def test_random_crop_with_padding_shows_the_border(photo_batch):
    out = Pipeline.from_spec([{"op": "random_crop", "size": 96, "padding": 8, "fill": 0}])(photo_batch, seed=0)
    shifted = (out.params[0]["top"] != 8) | (out.params[0]["left"] != 8)
    assert shifted.any()
    i = int(shifted.nonzero()[0])
    t, l = int(out.params[0]["top"][i]), int(out.params[0]["left"][i])
    padded = torch.nn.functional.pad(photo_batch[i], (8, 8, 8, 8))
    assert torch.equal(out.x[i], padded[:, t:t + 96, l:l + 96])


# --- spec formats -----------------------------------------------------------------------------


def test_spec_formats_compile_to_the_same_pipeline(tmp_path):
    steps = [{"op": "hflip"}, {"op": "rand_augment", "n": 2, "m": 9}]
    as_json = json.dumps(steps)
    as_yaml = "- op: hflip\n- op: rand_augment\n  n: 2\n  m: 9\n"
    path = tmp_path / "pipe.yaml"
    path.write_text(as_yaml)
    import pathlib
    specs = [steps, {"steps": steps}, as_json, as_yaml, pathlib.Path(path)]
    canonical = [Pipeline.from_spec(s).to_spec() for s in specs]
    assert all(c == canonical[0] for c in canonical)
    assert Pipeline.from_spec(canonical[0]).to_spec() == canonical[0]


@pytest.mark.parametrize("spec, words", [
    ([{"op": "sparkle"}], ["step 1", "'op'", "sparkle"]),
    ([{"op": "hflip", "p": -0.1}], ["step 1 (hflip)", "'p'", "-0.1", "[0, 1]"]),
    ([{"op": "hflip", "p": "half"}], ["'p'", "'half'"]),
    ([{"op": "hflip", "prob": 0.5}], ["unknown field 'prob'"]),
    ([{"op": "random_resized_crop", "size": 0}], ["'size'", "got 0"]),
    ([{"op": "random_resized_crop"}], ["'size' is required"]),
    ([{"op": "rand_augment", "m": 31}], ["'m'", "[0, 30]", "31"]),
    ([{"op": "rand_augment", "m": 9, "n": 2.5}], ["'n'", "integer", "2.5"]),
    ([{"op": "rand_augment", "mstd": float("nan")}], ["'mstd'"]),
    ([{"op": "random_erasing", "scale": [0.5, 0.1]}], ["'scale'", "min <= max"]),
    ([{"op": "normalize", "std": [0.2, 0.0, 0.2]}], ["'std'", "(0, 1000]"]),
    ([{"op": "auto_augment", "policy": "coco"}], ["'policy'", "'imagenet'"]),
    ([{"op": "color_jitter", "hue": 0.7}], ["'hue'", "0.7"]),
    ([{"op": "hflip"}, {"op": "vflip", "p": 2}], ["step 2 (vflip)", "'p'"]),
    ([], ["at least one step"]),
    ("no-such-preset", ["unknown preset", "imagenet-randaug"]),
    ("rand-m9-x3", ["section 'x3'", "rand-m9-mstd0.5-inc1"]),
    ("[1, 2", ["not valid JSON or YAML"]),
    (42, ["expected a preset name"]),
])
def test_bad_specs_name_the_field(spec, words):
    with pytest.raises(SpecError) as error:
        Pipeline.from_spec(spec)
    for word in words:
        assert word in str(error.value)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("x, words", [
    (torch.zeros(3, 8, 8, dtype=torch.uint8), ["rank 3"]),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int32), ["dtype", "int32"]),
    (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), ["non-empty"]),
    (torch.full((1, 3, 8, 8), float("nan")), ["NaN"]),
    ([[1, 2]], ["torch.Tensor or numpy"]),
])
def test_bad_tensors_raise_value_error(x, words):
    with pytest.raises(ValueError) as error:
        Pipeline.from_spec("rand-m9")(x)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("op", ["rand_augment", "color_jitter", "equalize", "grayscale", "solarize"])
def test_color_ops_refuse_other_channel_counts(op):
    with pytest.raises(ValueError, match=f"step 2 \\({op}\\): expected images with 1 or 3 channels, got 4"):
        Pipeline.from_spec([{"op": "hflip"}, {"op": op}])(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))


def test_geometric_ops_take_any_channel_count():
    x = torch.randint(0, 256, (2, 5, 16, 16), dtype=torch.uint8)
    out = Pipeline.from_spec([{"op": "random_affine", "degrees": 30}, {"op": "random_erasing", "p": 1.0},
                              {"op": "random_resized_crop", "size": 8}])(x)
    assert out.x.shape == (2, 5, 8, 8)


def test_per_channel_fields_must_match_channels(photo_batch):
    with pytest.raises(ValueError, match="'mean' has 2 values"):
        Pipeline.from_spec([{"op": "normalize", "mean": [0.5, 0.5], "std": 0.2}])(photo_batch)
    with pytest.raises(ValueError, match=r"'fill' = \[300.0\]"):
        Pipeline.from_spec([{"op": "random_affine", "degrees": 10, "fill": 300}])(photo_batch)


# --- refusals that say what to do ------------------------------------------------------------


def _refusal(spec, x) -> str:
    with pytest.raises(ValueError) as error:
        Pipeline.from_spec(spec)(x)
    return str(error.value)


def test_grayscale_into_a_three_channel_normalize_says_how_to_fix_it(photo_batch):
    message = _refusal("imagenet-randaug", photo_batch[:, :1])
    assert message.startswith("step 5 (normalize): field 'mean' has 3 values (one per channel) but the batch "
                              "has 1 channel: grayscale images? repeat the channel (x.expand(-1, 3, -1, -1) "
                              "(torch) or np.repeat(x, 3, axis=1) (numpy)) or give one mean and one std (these "
                              "averaged: mean 0.449, std 0.226)"), message
    assert Pipeline.from_spec("imagenet-randaug")(photo_batch[:, :1].expand(-1, 3, -1, -1)).x.shape[1] == 3


@pytest.mark.parametrize("to_numpy", [False, True])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels_last_batches_are_named_with_the_permute(photo_batch, channels, to_numpy):
    x = photo_batch[:, :channels].permute(0, 2, 3, 1).contiguous()  # (N, H, W, C)
    message = _refusal("imagenet-randaug", x.numpy() if to_numpy else x)
    assert message == (f"x: expected (B, C, H, W) images, got shape {tuple(x.shape)}; it looks like channels-last "
                       "(N, H, W, C): permute to (N, C, H, W), e.g. x.permute(0, 3, 1, 2) (torch) or "
                       "x.transpose(0, 3, 1, 2) (numpy)")


def test_channels_last_is_only_guessed_for_image_pipelines():
    out = Pipeline.from_spec([{"op": "mixup"}])(torch.rand(4, 32, 32, 3), torch.arange(4), num_classes=4)
    assert out.x.shape == (4, 32, 32, 3)  # mixing alone is layout-blind; nothing to refuse


def test_rgba_says_drop_the_alpha_channel(photo_batch):
    rgba = torch.cat([photo_batch, torch.full_like(photo_batch[:, :1], 255)], dim=1)
    assert _refusal("imagenet-randaug", rgba) == ("step 3 (rand_augment): expected images with 1 or 3 channels, "
                                                  "got 4; RGBA? drop the alpha channel (x[:, :3]) or convert the "
                                                  "images to RGB")
    assert _refusal([{"op": "normalize"}], rgba).endswith("'mean' has 3 values (one per channel) but the batch has "
                                                         "4 channels: RGBA? drop the alpha channel (x[:, :3]) or "
                                                         "convert the images to RGB")


def test_float_images_off_the_unit_scale_are_refused_by_pixel_reading_steps(photo_batch):
    pixels = photo_batch.float()  # 0..255 as float
    pixels[0, 0, 0, :2] = torch.tensor([0.0, 255.0])
    assert _refusal("imagenet-randaug", pixels) == ("x: float images are read as 0..1 by step 3 (rand_augment); "
                                                    "got values in [0, 255]: 0..255 pixels? divide by 255 or pass "
                                                    "them as uint8")
    normalized = (pixels / 255 - 0.45) / 0.225
    message = _refusal([{"op": "hflip"}, {"op": "normalize"}], normalized)
    assert message.startswith("x: float images are read as 0..1 by step 2 (normalize); got values in [-2, 2.44]: "
                              "already normalized? augment before normalizing"), message
    pipe = Pipeline.from_spec([{"op": "color_jitter"}])
    with pytest.raises(ValueError, match="read as 0..1 by step 1"):
        pipe.check(pixels)  # refused before any work (the server checks so)
    before, _ = Pipeline.from_spec([{"op": "hflip"}, {"op": "normalize"}]).deferring_normalize()
    with pytest.raises(ValueError, match="read as 0..1 by step 2"):
        before.check(pixels)  # the normalize a client runs after the copy reads them as 0..1 all the same


def test_float_images_that_no_step_reads_as_pixels_may_be_normalized(photo_batch):
    normalized = (photo_batch.float() / 255 - 0.45) / 0.225
    geometric = [{"op": "random_resized_crop", "size": 32}, {"op": "hflip"},
                 {"op": "random_erasing", "value": "random"}, {"op": "mixup"}]
    assert Pipeline.from_spec(geometric)(normalized, torch.arange(16) % 4, num_classes=4).x.min() < 0
    overshoot = (photo_batch.float() / 255) * 1.1 - 0.05  # bicubic resampling overshoots a little
    assert Pipeline.from_spec("imagenet-randaug")(overshoot).x.shape == (16, 3, 224, 224)


def test_a_deferred_normalize_is_checked_with_the_batch(photo_batch):
    before, deferred = Pipeline.from_spec("imagenet-randaug").deferring_normalize()
    assert deferred.op == "normalize"
    with pytest.raises(ValueError, match=r"step 5 \(normalize\): field 'mean' has 3 values .* repeat the channel"):
        before.check(photo_batch[:, :1])  # refused before the work, not when the answer is written


@pytest.mark.parametrize("spec, message", [
    ([{"op": "hflp"}], "step 1: field 'op': unknown op 'hflp'; did you mean 'hflip'? ("),
    ([{"op": "RandAugment"}], "unknown op 'RandAugment'; did you mean 'rand_augment'? ("),
    ([{"op": "hflip", "pp": 0.5}], "step 1 (hflip): unknown field 'pp'; did you mean 'p'? (allowed: p)"),
    ([{"op": "random_erasing", "scales": 0.5}], "unknown field 'scales'; did you mean 'scale'? (allowed: p, ratio, "),
    ([{"op": "normalize", "man": 0.5}], "unknown field 'man'; did you mean 'mean'? (allowed: mean, std)"),
    ([{"op": "random_affine", "interpolation": "bilinar"}],
     "field 'interpolation': expected one of 'nearest', 'bilinear', 'bicubic', got 'bilinar'; "
     "did you mean 'bilinear'?"),
    ("imagenet-randaugment", "unknown preset 'imagenet-randaugment'; did you mean 'imagenet-randaug'? (presets: "),
    ({"modalty": "image", "steps": [{"op": "hflip"}]},
     "pipeline: unknown field 'modalty'; did you mean 'modality'? "
     "(allowed: modality, steps, and for text tokenizer, vocabulary, max_words)"),
])
def test_mistyped_names_get_a_did_you_mean(spec, message):
    with pytest.raises(SpecError) as error:
        Pipeline.from_spec(spec)
    assert message in str(error.value)


def test_no_did_you_mean_without_a_close_name():
    with pytest.raises(SpecError) as error:
        Pipeline.from_spec([{"op": "sparkle"}])
    assert "did you mean" not in str(error.value) and "`augserve pipelines --ops` lists them" in str(error.value)


def test_steps_are_numbered_from_one_in_every_message():
    messages = []
    smoothing_twice = [{"op": "hflip"}, {"op": "label_smoothing"}, {"op": "label_smoothing"}]
    for spec in ([{"op": "hflip", "p": 2}], ["hflip"], smoothing_twice):
        with pytest.raises(SpecError) as error:
            Pipeline.from_spec(spec)
        messages.append(str(error.value))
    assert messages[0].startswith("step 1 (hflip): field 'p'")
    assert messages[1].startswith("step 1: expected a mapping")
    assert "(step 2 (label_smoothing), step 3 (label_smoothing))" in messages[2]


def test_a_yaml_error_in_a_pipeline_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "pipe.yaml"
    path.write_text("- op: hflip\n- op: rand_augment\n  n: 2\n   m: 9\n")
    with pytest.raises(SpecError) as error:
        Pipeline.from_spec(path)
    assert str(error.value) == f"pipeline file {path}: line 4, column 5: not valid JSON or YAML: mapping values " \
                               "are not allowed here"


# --- labels and output dtypes -----------------------------------------------------------------


def test_class_indices_become_one_hot_rows(photo_batch):
    labels = torch.arange(16) % 5
    out = Pipeline.from_spec("rand-m9")(photo_batch, labels, num_classes=5)
    assert out.labels.dtype == torch.float32 and out.labels.shape == (16, 5)
    assert torch.equal(out.labels.argmax(1), labels) and torch.allclose(out.labels.sum(1), torch.ones(16))
    assert Pipeline.from_spec("rand-m9")(photo_batch).labels is None


def test_soft_labels_pass_through(photo_batch):
    soft = torch.softmax(torch.randn(16, 7), dim=1)
    out = Pipeline.from_spec("rand-m9")(photo_batch, soft.numpy())
    assert torch.allclose(out.labels, soft)


@pytest.mark.parametrize("labels, num_classes, words", [
    (torch.arange(16), None, ["num_classes", "required"]),
    (torch.arange(16), 10, ["class index 15", "[0, 10)"]),
    (torch.arange(16) - 1, 20, ["class index -1"]),
    (torch.arange(15), 20, ["expected 16 rows"]),
    (torch.full((16, 4), 0.3), None, ["sum to 1"]),
    (torch.full((16, 4), 0.25), 5, ["num_classes = 5"]),
    (torch.arange(16), 0, ["num_classes", "got 0"]),
])
def test_bad_labels_are_refused(photo_batch, labels, num_classes, words):
    with pytest.raises(ValueError) as error:
        Pipeline.from_spec("rand-m9")(photo_batch, labels, num_classes=num_classes)
    for word in words:
        assert word in str(error.value)


def test_out_dtypes(photo_batch):
    pipe = Pipeline.from_spec([{"op": "hflip"}])
    assert pipe(photo_batch, out_dtype="float16").x.dtype == torch.float16
    assert pipe(photo_batch.half() / 255).x.dtype == torch.float16  # float inputs come back as they came
    as_float = pipe(photo_batch, out_dtype=torch.float32, seed=1).x
    back = pipe(as_float, out_dtype="uint8", seed=1).x
    assert float(as_float.max()) <= 1.0 and back.dtype == torch.uint8
    assert pipe(np.ascontiguousarray(photo_batch.numpy())).x.dtype == torch.uint8
    with pytest.raises(ValueError, match="uint8 cannot hold normalized"):
        Pipeline.from_spec("imagenet-eval")(photo_batch, out_dtype="uint8")
    with pytest.raises(ValueError, match="out_dtype"):
        pipe(photo_batch, out_dtype="int8")


def test_keys_are_validated(photo_batch):
    with pytest.raises(ValueError, match="keys: expected a 1-D int64 tensor of length 16"):
        Pipeline.from_spec("rand-m9")(photo_batch, keys=torch.arange(3))
