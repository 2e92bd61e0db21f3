"""Mixing and soft labels: the invariants users have been burned by, checked directly."""

import pytest
import torch
from scipy import stats

from augserve import Pipeline, SpecError

IMAGE = (3, 24, 20)
MODALITY_SHAPES = {"image": (3, 24, 20), "spectrogram": (40, 64), "spectrogram-4d": (2, 40, 64),
                   "timeseries": (3, 128)}


def run(step, x, labels=None, num_classes=None, seed=0, modality=None, **options):
    spec = {"steps": [{"op": step, **options}]}
    if modality:
        spec["modality"] = modality
    out = Pipeline.from_spec(spec)(x, labels, seed=seed, num_classes=num_classes)
    return out, out.params[0]


def batch(n, shape=IMAGE, seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["elem", "pair", "batch"])
@pytest.mark.parametrize("n", [2, 7, 33])
@pytest.mark.parametrize("classes", [2, 1000])
def test_soft_label_rows_sum_to_one(mode, n, classes):
    out, _ = run("mix", batch(n), torch.arange(n) % classes, num_classes=classes, mode=mode)
    assert out.labels.shape == (n, classes) and out.labels.dtype == torch.float32
    assert (out.labels >= 0).all()
    assert torch.allclose(out.labels.sum(1), torch.ones(n), atol=1e-6)


@pytest.mark.parametrize("mode", ["elem", "pair", "batch"])
def test_mixup_blends_pixels_and_labels_with_the_same_lambda(mode):
    x, y = batch(9), torch.arange(9)
    out, p = run("mixup", x, y, num_classes=9, mode=mode, alpha=0.4)
    lam, partner = p["lam"].double(), p["partner"]
    want = lam.view(-1, 1, 1, 1) * x.double() + (1 - lam.view(-1, 1, 1, 1)) * x[partner].double()
    assert torch.allclose(out.x.double(), want, atol=1e-6)
    rows = torch.arange(9)
    mixed = p["mixed"]
    assert torch.allclose(out.labels[rows, y].double()[mixed], lam[mixed], atol=1e-6)
    assert torch.allclose(out.labels[rows, y[partner]].double()[mixed], 1 - lam[mixed], atol=1e-6)
    if mode != "pair":  # an odd batch in pair mode leaves one sample alone (tested below)
        assert (partner != rows).all()  # nobody mixes with itself, even in an odd batch
    if mode == "batch":
        assert torch.unique(lam).numel() == 1
    else:
        assert torch.unique(lam).numel() > 1


@pytest.mark.parametrize("mode", ["elem", "pair", "batch"])
@pytest.mark.parametrize("minmax", [None, [0.2, 0.6]])
def test_cutmix_label_weight_is_the_pasted_area_to_the_pixel(mode, minmax):
    n = 16
    x = (torch.arange(n).view(-1, 1, 1, 1) * 10 + 5).expand(n, *IMAGE).to(torch.uint8).contiguous()
    y = torch.arange(n)
    out, p = run("cutmix", x, y, num_classes=n, mode=mode, minmax=minmax)
    assert out.x.dtype == torch.uint8  # pasting needs no float
    partner = p["partner"]
    from_partner = (out.x == x[partner]).all(dim=1)
    from_self = (out.x == x).all(dim=1)
    assert (from_partner | from_self).all()  # every pixel comes from x_i or x_j
    pasted = from_partner.flatten(1).double().mean(1)
    assert torch.allclose(out.labels[torch.arange(n), y[partner]].double(), pasted, atol=1e-6)
    assert torch.allclose(p["lam"].double(), 1 - pasted, atol=1e-6)
    top, left, h, w = p["region"].T
    for i in range(n):
        box = torch.zeros(IMAGE[1:], dtype=torch.bool)
        box[top[i]:top[i] + h[i], left[i]:left[i] + w[i]] = True
        assert torch.equal(from_partner[i], box)


def test_cutmix_pixels_are_exact_copies_when_mixed_with_mixup_in_float():
    x, y = batch(32), torch.arange(32)
    out, p = run("mix", x, y, num_classes=32, switch_prob=0.5)
    cut = p["cutmix"]
    assert cut.any() and (~cut).any()
    other = x[p["partner"]]
    exact = ((out.x == x) | (out.x == other)).all(dim=1).flatten(1).all(dim=1)
    assert exact[cut].all()  # pasting through the shared lerp copies bits exactly
    pasted = ((out.x == other) & (out.x != x)).all(dim=1).flatten(1).double().mean(1)
    partner_weight = out.labels[torch.arange(32), y[p["partner"]]].double()
    assert torch.allclose(partner_weight[cut], pasted[cut], atol=1e-6)


@pytest.mark.parametrize("modality", ["spectrogram", "spectrogram-4d", "timeseries"])
def test_cutmix_pastes_a_time_span_in_sequences(modality):
    shape = MODALITY_SHAPES[modality]
    n = 12
    x = batch(n, shape)
    out, p = run("cutmix", x, torch.arange(n), num_classes=n, modality=modality.split("-")[0])
    partner = p["partner"]
    from_partner = (out.x == x[partner]).flatten(1, -2).all(dim=1)  # (n, T): whole time columns
    from_self = (out.x == x).flatten(1, -2).all(dim=1)
    assert (from_partner | from_self).all()
    start, length = p["region"].T
    for i in range(n):
        span = torch.zeros(shape[-1], dtype=torch.bool)
        span[start[i]:start[i] + length[i]] = True
        assert torch.equal(from_partner[i], span)
    assert torch.allclose(p["lam"].double(), 1 - length.double() / shape[-1], atol=1e-6)
    assert torch.allclose(out.labels.sum(1), torch.ones(n), atol=1e-6)


@pytest.mark.parametrize("modality", ["spectrogram", "timeseries"])
def test_mixup_blends_sequences(modality):
    x = batch(6, MODALITY_SHAPES[modality])
    out, p = run("mixup", x, modality=modality)
    lam = p["lam"].view(-1, 1, 1)
    assert torch.allclose(out.x, lam * x + (1 - lam) * x[p["partner"]], atol=1e-6)


def test_uint8_images_mixup_to_float_in_unit_range():
    x = (torch.rand(4, *IMAGE) * 255).to(torch.uint8)
    out, p = run("mixup", x)
    lam = p["lam"].view(-1, 1, 1, 1)
    unit = x.float() / 255
    assert out.x.dtype == torch.float32
    assert torch.allclose(out.x, lam * unit + (1 - lam) * unit[p["partner"]], atol=1e-6)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_elem_lambda_follows_beta_per_sample(alpha):
    _, p = run("mixup", batch(4000, (1, 2, 2)), alpha=alpha)
    assert stats.kstest(p["lam"].double().numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_batch_lambda_follows_beta_across_requests():
    pipe = Pipeline.from_spec([{"op": "mixup", "alpha": 0.4, "mode": "batch"}])
    x = batch(3, (1, 2, 2))
    lams = [float(pipe(x, seed=s).params[0]["lam"][0]) for s in range(1500)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3


def test_switch_and_prob():
    _, p = run("mix", batch(4000, (1, 2, 2)), prob=0.6, switch_prob=0.25)
    mixed, cut = p["mixed"].double(), p["cutmix"].double()
    assert abs(mixed.mean() - 0.6) < 0.03
    assert abs(cut.sum() / mixed.sum() - 0.25) < 0.03
    assert (p["lam"][~p["mixed"]] == 1).all()


def test_pair_mode_swaps_within_pairs_and_leaves_an_odd_one_out():
    x = batch(7)
    out, p = run("mix", x, mode="pair")
    partner = p["partner"]
    assert torch.equal(partner[partner], torch.arange(7))  # an involution
    alone = (partner == torch.arange(7)).nonzero().flatten()
    assert alone.numel() == 1 and "no pair" in p["note"]
    assert torch.equal(out.x[alone], x[alone])
    assert torch.equal(p["lam"][partner], p["lam"]) and torch.equal(p["region"][partner], p["region"])


def test_batch_of_one_is_the_identity_with_a_note():
    x = batch(1)
    out, p = run("mix", x, torch.tensor([[0.3, 0.7]]))
    assert torch.equal(out.x, x) and torch.allclose(out.labels, torch.tensor([[0.3, 0.7]]))
    assert "batch of 1" in p["note"]


@pytest.mark.parametrize("classes", [2, 1000])
def test_label_smoothing_bounds_and_once(classes):
    y = torch.arange(8) % classes
    eps = 0.1
    out = Pipeline.from_spec([{"op": "label_smoothing", "epsilon": eps}])(batch(8), y, num_classes=classes)
    assert torch.allclose(out.labels.min(1).values, torch.full((8,), eps / classes))
    assert torch.allclose(out.labels.max(1).values, torch.full((8,), 1 - eps + eps / classes))
    assert out.label_smoothing == eps
    plain = Pipeline.from_spec([{"op": "mix"}])(batch(8), y, num_classes=classes)
    assert plain.label_smoothing == 0.0 and plain.labels.min() >= 0 and (plain.labels == 0).any()


def test_smoothing_after_mixing_is_timms_smooth_then_mix():
    y = torch.arange(10) % 4
    both = Pipeline.from_spec([{"op": "mix"}, {"op": "label_smoothing", "epsilon": 0.2}])(batch(10), y, num_classes=4)
    lam, partner = both.params[0]["lam"].view(-1, 1), both.params[0]["partner"]
    smooth = torch.nn.functional.one_hot(y, 4) * 0.8 + 0.2 / 4  # timm: smooth each target, then mix
    assert torch.allclose(both.labels, lam * smooth + (1 - lam) * smooth[partner], atol=1e-6)
    assert torch.allclose(both.labels.sum(1), torch.ones(10), atol=1e-6)


def test_soft_labels_in_mix_honestly():
    soft = torch.softmax(torch.randn(6, 3), dim=1)
    out, p = run("mixup", batch(6), soft)
    lam = p["lam"].view(-1, 1)
    assert torch.allclose(out.labels, lam * soft + (1 - lam) * soft[p["partner"]], atol=1e-6)


def test_same_request_mixes_the_same_way_and_order_does_not_matter():
    x, y = batch(10), torch.arange(10)
    keys = torch.arange(500, 510)
    pipe = Pipeline.from_spec([{"op": "hflip"}, {"op": "mix"}])
    one = pipe(x, y, seed=4, keys=keys, num_classes=10)
    two = pipe(x, y, seed=4, keys=keys, num_classes=10)
    assert torch.equal(one.x, two.x) and torch.equal(one.labels, two.labels)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    shuffled = pipe(x[perm], y[perm], seed=4, keys=keys[perm], num_classes=10)
    assert torch.equal(shuffled.x, one.x[perm]) and torch.equal(shuffled.labels, one.labels[perm])


@pytest.mark.parametrize("spec, words", [
    ([{"op": "mixup", "alpha": 0}], ["'alpha'", "(0, 1000]", "got 0"]),
    ([{"op": "cutmix", "alpha": -1}], ["'alpha'"]),
    ([{"op": "mix", "mixup_alpha": 0, "cutmix_alpha": 0}], ["both 0"]),
    ([{"op": "mix", "mode": "row"}], ["'mode'", "'elem'"]),
    ([{"op": "cutmix", "minmax": [0.7, 0.2]}], ["'minmax'"]),
    ([{"op": "label_smoothing", "epsilon": 1.0}], ["'epsilon'", "[0, 1)"]),
    ([{"op": "label_smoothing"}, {"op": "mix"}, {"op": "label_smoothing"}], ["appears 2 times"]),
    ({"modality": "timeseries", "steps": [{"op": "rand_augment"}]}, ["works on image", "timeseries"]),
    ({"modality": "video", "steps": [{"op": "mix"}]}, ["'modality'", "video"]),
])
def test_bad_mix_specs(spec, words):
    with pytest.raises(SpecError) as error:
        Pipeline.from_spec(spec)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("labels, num_classes, words", [
    (torch.arange(4), None, ["num_classes"]),
    (torch.tensor([0, 1, 2, 3]), 3, ["class index 3", "[0, 3)"]),
    (torch.full((4, 3), 0.5), None, ["sum to 1"]),
    (torch.full((4, 2), 0.5), 3, ["num_classes = 3"]),
])
def test_bad_labels_for_mixing(labels, num_classes, words):
    with pytest.raises(ValueError) as error:
        run("mix", batch(4), labels, num_classes=num_classes)
    for word in words:
        assert word in str(error.value)


def test_sequences_must_be_float_and_the_right_rank():
    with pytest.raises(ValueError, match="timeseries batches must be float"):
        run("mix", torch.zeros(2, 3, 10, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        run("mix", torch.zeros(2, 3, 4, 10), modality="timeseries")
