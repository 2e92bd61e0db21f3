"""With fixed parameters, each op matches torchvision.transforms.v2.functional on real photos.

Per-sample factors are passed as a batch and compared with torchvision applied
to each image alone, so a kernel that mixed up samples would fail too.

Tolerances: color ops on uint8 agree to within 1 grey level (float32 summation
order); warps with nearest sampling may pick the neighbouring pixel where a
sample point falls within float rounding of a pixel boundary, so we allow that
on at most 0.5% of pixels.
"""

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from augserve.ops import color, geometry

FACTORS = torch.tensor([0.0, 0.5, 1.0, 1.7])


def per_image(photos, fn, values):
    return torch.stack([fn(img, float(v)) for img, v in zip(photos, values)])


def assert_close_uint8(ours, theirs, max_diff=1):
    assert ours.dtype == theirs.dtype == torch.uint8 and ours.shape == theirs.shape
    diff = (ours.int() - theirs.int()).abs()
    assert diff.max() <= max_diff, f"max diff {diff.max()}"


@pytest.mark.parametrize("ours, theirs", [
    (color.brightness, TF.adjust_brightness),
    (color.contrast, TF.adjust_contrast),
    (color.saturation, TF.adjust_saturation),
    (color.sharpness, TF.adjust_sharpness),
])
def test_blend_ops_match(photos, ours, theirs):
    assert_close_uint8(ours(photos, FACTORS), per_image(photos, theirs, FACTORS))
    as_float = photos.float() / 255
    got = ours(as_float, FACTORS)
    want = per_image(as_float, theirs, FACTORS)
    assert got.dtype == torch.float32 and (got - want).abs().max() < 1e-5


def test_posterize_and_solarize_match(photos):
    bits = torch.tensor([0, 3, 6, 8])
    assert torch.equal(color.posterize(photos, bits), per_image(photos, lambda i, b: TF.posterize(i, int(b)), bits))
    thresholds = torch.tensor([0.0, 64.0, 128.5, 255.0])
    assert torch.equal(color.solarize(photos, thresholds), per_image(photos, TF.solarize, thresholds))
    as_float = photos.float() / 255
    got = color.solarize(as_float, thresholds / 255)
    assert torch.equal(got, per_image(as_float, TF.solarize, thresholds / 255))


def test_hue_matches(photos):
    shifts = torch.tensor([-0.5, -0.1, 0.0, 0.3])
    assert_close_uint8(color.hue(photos, shifts), per_image(photos, TF.adjust_hue, shifts))


@pytest.mark.parametrize("name", ["equalize", "autocontrast", "invert", "grayscale"])
def test_parameterless_ops_match(photos, name):
    theirs = {"equalize": TF.equalize, "autocontrast": TF.autocontrast, "invert": TF.invert,
              "grayscale": lambda i: TF.rgb_to_grayscale(i, num_output_channels=3)}[name]
    assert torch.equal(getattr(color, name)(photos), torch.stack([theirs(i) for i in photos]))


def test_equalize_edge_cases_match(photos):
    """Flat channels (left alone), two levels, a few pixels under a dominant top level, a tiny image."""
    edge = photos.clone()
    edge[0] = 7
    edge[1] = torch.where(photos[1] > 128, 200, 3).to(torch.uint8)
    edge[2] = 255
    edge[2, :, :2, :3] = torch.tensor([0, 40, 90], dtype=torch.uint8)
    edge[3, 1] = photos[3, 1] // 64
    for batch in (edge, edge[..., :1, :2]):
        assert torch.equal(color.equalize(batch), torch.stack([TF.equalize(i) for i in batch]))


def assert_mostly_equal(ours, theirs, fraction=0.005):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    mismatch = (ours.int() - theirs.int()).abs().gt(1).float().mean().item()
    assert mismatch <= fraction, f"{mismatch:.4%} of pixels differ"


def _identity(n):
    return torch.zeros(n), torch.ones(n)


def test_rotate_matches(photos):
    angles = torch.tensor([-27.0, 9.0, 45.0, 120.0])
    zero, one = _identity(4)
    matrix = geometry.inverse_affine_matrix(-angles, zero, zero, one, zero, zero, zero, zero)
    ours = geometry.warp_affine(photos, matrix, "nearest", 0.0)
    assert_mostly_equal(ours, per_image(photos, lambda i, a: TF.rotate(i, a), angles))
    bilinear = TF.InterpolationMode.BILINEAR
    ours = geometry.warp_affine(photos, matrix, "bilinear", 0.0)
    assert_mostly_equal(ours, per_image(photos, lambda i, a: TF.rotate(i, a, interpolation=bilinear), angles))


def test_bilinear_fill_differs_only_on_the_warped_edge(photos):
    """torchvision weights an edge sample by its coverage twice; we blend image and fill once."""
    angles = torch.tensor([-27.0, 9.0, 45.0, 120.0])
    zero, one = _identity(4)
    matrix = geometry.inverse_affine_matrix(-angles, zero, zero, one, zero, zero, zero, zero)
    fill = (10.0, 20.0, 30.0)
    ours = geometry.warp_affine(photos, matrix, "bilinear", fill)
    theirs = per_image(photos, lambda i, a: TF.rotate(i, a, interpolation=TF.InterpolationMode.BILINEAR,
                                                        fill=list(fill)), angles)
    coverage = geometry.warp_affine(torch.ones_like(photos[:, :1], dtype=torch.float32), matrix, "bilinear", 0.0)
    interior = (coverage == 1.0).expand_as(ours)
    assert_mostly_equal(ours[interior], theirs[interior])
    outside = (coverage == 0.0).expand_as(ours)
    assert torch.equal(ours[outside], theirs[outside])


def test_affine_with_everything_matches(photos):
    angle = torch.tensor([5.0, -12.0, 30.0, 0.0])
    tx, ty = torch.tensor([3.0, -7.0, 0.0, 11.0]), torch.tensor([0.0, 4.0, -9.0, 2.0])
    scale = torch.tensor([0.8, 1.0, 1.3, 1.1])
    shx, shy = torch.tensor([10.0, 0.0, -20.0, 5.0]), torch.tensor([0.0, 7.0, 3.0, -4.0])
    zero = torch.zeros(4)
    matrix = geometry.inverse_affine_matrix(angle, tx, ty, scale, shx, shy, zero, zero)
    ours = geometry.warp_affine(photos, matrix, "nearest", 0.0)
    theirs = torch.stack([
        TF.affine(img, angle=float(a), translate=[float(x), float(y)], scale=float(s), shear=[float(u), float(v)])
        for img, a, x, y, s, u, v in zip(photos, angle, tx, ty, scale, shx, shy)
    ])
    assert_mostly_equal(ours, theirs)


def test_policy_shear_and_translate_match(photos):
    """As the auto-augment policies call them: shear about the top-left corner, integer shifts."""
    magnitudes = torch.tensor([0.3, -0.15, 0.25, -0.3])
    degrees = torch.rad2deg(torch.atan(magnitudes))
    zero, one = _identity(4)
    h, w = photos.shape[-2:]
    corner_x, corner_y = torch.full((4,), -w / 2), torch.full((4,), -h / 2)
    ours = geometry.warp_affine(photos, geometry.inverse_affine_matrix(zero, zero, zero, one, degrees, zero,
                                                                       corner_x, corner_y))
    theirs = per_image(photos, lambda i, d: TF.affine(i, angle=0.0, translate=[0, 0], scale=1.0, shear=[d, 0.0],
                                                      center=[0, 0]), degrees)
    assert_mostly_equal(ours, theirs)
    shifts = torch.tensor([-30.0, 12.0, 0.0, 43.0])
    ours = geometry.warp_affine(photos, geometry.inverse_affine_matrix(zero, shifts, zero, one, zero, zero,
                                                                       zero, zero))
    theirs = per_image(photos, lambda i, t: TF.affine(i, angle=0.0, translate=[int(t), 0], scale=1.0,
                                                      shear=[0.0, 0.0]), shifts)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("interpolation", [TF.InterpolationMode.NEAREST, TF.InterpolationMode.BILINEAR])
@pytest.mark.parametrize("fill", [None, [10.0, 127.6, 255.0]])
def test_whole_pixel_translation_is_torchvision_affine(photos, interpolation, fill):
    """Shifts (both axes, past the edge, by the full side) without resampling equal torchvision's warp."""
    h, w = photos.shape[-2:]
    shift_x, shift_y = torch.tensor([-30, 0, w, 7]), torch.tensor([0, -h - 5, 12, -3])
    ours = geometry.translate_whole(photos, shift_x, shift_y, 0.0 if fill is None else fill)
    theirs = torch.stack([TF.affine(img, angle=0.0, translate=[int(x), int(y)], scale=1.0, shear=[0.0, 0.0],
                                    interpolation=interpolation, fill=fill)
                          for img, x, y in zip(photos, shift_x, shift_y)])
    assert torch.equal(ours, theirs)
    assert torch.equal(geometry.translate_whole(photos.float(), shift_x, shift_y), TF.to_dtype(
        geometry.translate_whole(photos, shift_x, shift_y), torch.float32, scale=False))


def test_resized_crop_is_torchvision_antialiased(photos):
    boxes = torch.tensor([[0, 0, 96, 96], [10, 20, 50, 40], [30, 5, 20, 70], [60, 60, 36, 36]])
    theirs = torch.stack([TF.resized_crop(img, *b.tolist(), size=[64, 64], antialias=True)
                          for img, b in zip(photos, boxes)])
    assert torch.equal(geometry.resized_crop(photos, boxes, (64, 64)), theirs)


def test_crop_gathers_each_window(photos):
    top, left = torch.tensor([0, 5, 40, 10]), torch.tensor([3, 0, 20, 60])
    ours = geometry.crop(photos, top, left, (32, 36))
    for i in range(4):
        assert torch.equal(ours[i], TF.crop(photos[i], int(top[i]), int(left[i]), 32, 36))


def test_flip_where_flips_only_selected(photos):
    mask = torch.tensor([True, False, True, False])
    out = geometry.flip_where(photos, mask, dim=-1)
    assert torch.equal(out[0], photos[0].flip(-1)) and torch.equal(out[1], photos[1])


def test_inverse_matrix_matches_torchvision_formula():
    from torchvision.transforms.v2.functional._geometry import _get_inverse_affine_matrix

    args = dict(angle=17.0, tx=3.0, ty=-5.0, scale=1.2, shx=8.0, shy=-6.0, cx=-10.0, cy=4.0)
    theirs = _get_inverse_affine_matrix([args["cx"], args["cy"]], args["angle"], [args["tx"], args["ty"]],
                                        args["scale"], [args["shx"], args["shy"]])
    ours = geometry.inverse_affine_matrix(*(torch.tensor([v]) for v in args.values()))
    assert torch.allclose(ours.flatten(), torch.tensor(theirs), atol=1e-5)
    assert not math.isnan(float(ours.sum()))


def test_affine_grid_matches_torch():
    theta = torch.randn(5, 2, 3)
    ours = geometry.affine_grid(theta, 17, 23)
    theirs = torch.nn.functional.affine_grid(theta, [5, 1, 17, 23], align_corners=False)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [(5, 5), (7, 11), (23, 3)])
def test_gaussian_blur_matches_torchvision_per_sample_sigma(photos, kernel_size):
    from augserve.ops import blur

    sigma = torch.tensor([0.3, 1.0, 2.5, 7.0]).repeat(len(photos))[: len(photos)]
    ours = blur.gaussian_blur(photos, sigma, kernel_size)
    theirs = torch.stack([TF.gaussian_blur(image, [kernel_size[1], kernel_size[0]], [float(s), float(s)])
                          for image, s in zip(photos, sigma)])  # torchvision orders the kernel (x, y)
    assert (ours.int() - theirs.int()).abs().max() <= 1  # float sums in another order: rounding only
    assert ((ours != theirs).float().mean()) < 0.001
    floats = photos.float() / 255
    ours = blur.gaussian_blur(floats, sigma, kernel_size)
    theirs = torch.stack([TF.gaussian_blur(image, [kernel_size[1], kernel_size[0]], [float(s), float(s)])
                          for image, s in zip(floats, sigma)])
    assert torch.allclose(ours, theirs, atol=1e-5)
