"""Auto-augment policies: per-sample op choice, torchvision's op semantics, honest distributions."""

import pytest
import torch
from scipy import stats
from torchvision.transforms import v2

from augserve import Pipeline
from augserve.ops import policies, policy_kernels
from augserve.random import SampleRng

TV_NAMES = {
    "identity": "Identity", "shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateX",
    "translate_y": "TranslateY", "rotate": "Rotate", "brightness": "Brightness", "color": "Color",
    "contrast": "Contrast", "sharpness": "Sharpness", "posterize": "Posterize", "solarize": "Solarize",
    "autocontrast": "AutoContrast", "equalize": "Equalize", "invert": "Invert",
}


def replay_with_torchvision(images, params):
    """Apply torchvision's own op implementation, sample by sample, with our drawn ops and values."""
    tv = v2.RandAugment()
    out = []
    for image, ops, values in zip(images, params["ops"].tolist(), params["values"].tolist()):
        for op, value in zip(ops, values):
            if op >= 0:
                image = tv._apply_image_or_video_transform(image, TV_NAMES[params["space"][op]], value,
                                                           interpolation=v2.InterpolationMode.NEAREST, fill=tv._fill)
        out.append(image)
    return torch.stack(out)


@pytest.mark.parametrize("step", [
    {"op": "rand_augment", "n": 2, "m": 9},
    {"op": "rand_augment", "n": 3, "m": 5, "mstd": 1.0},
    {"op": "trivial_augment"},
    {"op": "auto_augment", "policy": "imagenet"},
    {"op": "auto_augment", "policy": "svhn"},
])
@pytest.mark.parametrize("layout", ["uint8 square", "uint8 96x72", "float"])
def test_policy_matches_torchvision_given_the_same_draws(photo_batch, step, layout):
    x = {"uint8 square": photo_batch, "uint8 96x72": photo_batch[..., :72].contiguous(),
         "float": photo_batch.float() / 255}[layout]
    out = Pipeline.from_spec([step])(x, seed=3)
    theirs = replay_with_torchvision(x, out.params[0])
    tolerance = 1 if x.dtype == torch.uint8 else 1 / 255
    differs = (out.x.double() - theirs.double()).abs().gt(tolerance).double().mean().item()
    assert differs < 0.005, f"{differs:.3%} of pixels differ from torchvision"


@pytest.mark.parametrize("spec", ["rand-m9-n2", "imagenet-trivial", "imagenet-autoaug"])
def test_identical_images_get_different_ops(photo_batch, spec):
    batch = photo_batch[:1].repeat(16, 1, 1, 1)
    pipe = Pipeline.from_spec(spec if spec.startswith("rand") else [Pipeline.from_spec(spec).to_spec()["steps"][2]])
    out = pipe(batch, seed=0)
    ops = out.params[0]["ops"]
    assert len({tuple(row) for row in ops.tolist()}) > 4
    assert len({bytes(img.numpy().tobytes()) for img in out.x}) > 4


def test_op_choice_is_uniform_per_sample():
    rng = SampleRng(0, torch.arange(28_000))
    params = policies.rand_augment_params(rng, 224, 224, num_ops=2, magnitude=9, num_bins=31)
    counts = torch.bincount(params.op_index.flatten(), minlength=14).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    rotate = [op.name for op in params.space].index("rotate")
    angles = params.value[params.op_index == rotate]
    assert set(angles.tolist()) == {-9.0, 9.0}  # torchvision: 30 degrees * 9/30, random sign
    assert abs((angles > 0).float().mean().item() - 0.5) < 0.03


def test_magnitude_noise_is_per_sample_and_clipped():
    def rng():  # the same streams each time: a stream gives each named draw once
        return SampleRng(0, torch.arange(4000))

    fixed = policies.rand_augment_params(rng(), 64, 64, 1, 9, 11)
    noisy = policies.rand_augment_params(rng(), 64, 64, 1, 9, 11, magnitude_std=2.0)
    uniform = policies.rand_augment_params(rng(), 64, 64, 1, 9, 11, magnitude_std=float("inf"))
    brightness = [op.name for op in policies.rand_augment_space(11)].index("brightness")

    def levels(p):
        return (p.value[p.op_index == brightness].abs() / 0.9).flatten()

    assert torch.allclose(levels(fixed), torch.tensor(0.9, dtype=torch.float64))  # float32 table values
    assert levels(noisy).std() > 0.1 and levels(noisy).max() <= 1.0 + 1e-9
    assert levels(uniform).max() <= 0.9 + 1e-9 and levels(uniform).min() < 0.1


@pytest.mark.parametrize("name", ["shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
                                  "color", "contrast", "sharpness", "posterize"])
def test_zero_magnitude_is_identity(photos, name):
    space = policies.rand_augment_space(31)
    index = [op.name for op in space].index(name)
    bins = torch.zeros(4, dtype=torch.float64)
    value = space[index].magnitude(bins, torch.tensor([False, True, False, True]), 96, 96)
    out = policy_kernels.apply_ops(photos, space, torch.full((4,), index), value)
    assert torch.equal(out, photos)


def test_auto_augment_applies_each_op_with_its_probability():
    rng = SampleRng(1, torch.arange(50_000))
    params = policies.auto_augment_params(rng, 64, 64, "imagenet")
    table = policies.AUTO_AUGMENT_POLICIES["imagenet"]
    expected = sum(p for sub in table for _, p, _ in sub) / len(table) / 2
    applied = (params.op_index >= 0).float().mean().item()
    assert abs(applied - expected) < 0.01


@pytest.mark.parametrize("space, num_bins", [
    (policies.rand_augment_space(31), 31), (policies.trivial_augment_space(31), 31),
    (policies.AUTO_AUGMENT_SPACE, 10), (policies.AUGMIX_SPACE, 10), (policies.rand_augment_space(11), 11),
])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_solarize_inverts_from_torchvisions_threshold_at_every_bin(space, num_bins, dtype):
    """torchvision compares with 255 * linspace(1, 0, bins)[m] in float32: 255 * (1 - 8/30) in float64 is
    187.00000000000003 and used to leave 187 alone (RandAugment m = 8, 10, 20, 22 of 31)."""
    every_level = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    image = every_level if dtype == torch.uint8 else every_level.float() / 255
    solarize = [op.name for op in space].index("solarize")
    tv = v2.RandAugment()
    for m in range(num_bins):
        value = space[solarize].magnitude(torch.tensor([float(m)], dtype=torch.float64), torch.tensor([False]), 16, 16)
        ours = policy_kernels.apply_ops(image, space, torch.tensor([solarize]), value)
        theirs = tv._apply_image_or_video_transform(image, "Solarize", float(torch.linspace(1.0, 0.0, num_bins)[m]),
                                                    interpolation=v2.InterpolationMode.NEAREST, fill=tv._fill)
        assert torch.equal(ours, theirs), f"bin {m} of {num_bins}"


def test_an_unknown_kernel_is_refused_where_the_op_is_declared():
    """A misspelled kernel used to run as the untouched group: a policy op that silently did nothing."""
    with pytest.raises(ValueError, match="unknown kernel 'brightnes_factor'"):
        policy_kernels.PolicyOp("Brightness", None, "brightnes_factor")


# an argument per kernel that changes a photo, in the units the kernel takes
CHANGING_VALUE = {"shear_x": 0.3, "shear_y": 0.3, "translate_x_rel": 0.2, "translate_y_rel": 0.2, "rotate": 20.0,
                  "translate_x": 9.0, "translate_y": 9.0, "brightness": 0.5, "color": 0.9, "contrast": 0.5,
                  "sharpness": 0.9, "solarize": 0.5, "hue": 0.3, "posterize": 2.0, "autocontrast": 0.0,
                  "equalize": 0.0, "invert": 0.0, "brightness_factor": 1.5, "color_factor": 1.9,
                  "contrast_factor": 1.5, "sharpness_factor": 1.9, "desaturate": 0.5, "solarize_level": 128.0,
                  "solarize_add": 60.0, "gaussian_blur_radius": 1.5}


@pytest.mark.parametrize("kernel", [k for k in policy_kernels.KERNELS if k not in policy_kernels.IDENTITY_KERNELS])
def test_every_registered_kernel_does_something(photos, kernel):
    """Every kernel an op may name is dispatched to a kernel that changes the image (none is left untouched)."""
    space = (policy_kernels.PolicyOp("op", None, kernel),)
    value = torch.full((photos.shape[0],), CHANGING_VALUE[kernel], dtype=torch.float64)
    out = policy_kernels.apply_ops(photos, space, torch.zeros(photos.shape[0], dtype=torch.int64), value)
    assert not torch.equal(out, photos)
