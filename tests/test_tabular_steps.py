"""Tabular steps on (B, F) float batches: rates, categorical columns, noise scales, where swapped values come
from, cutmix's column share, replay, and refusals that name the field."""

from __future__ import annotations

import math

import pytest
import torch

from augserve import Pipeline, table_stats
from augserve.spec import SpecError

ROWS, COLUMNS = 4096, 16
KEYS = torch.arange(ROWS) * 3 + 1


def _table(rows: int = ROWS, seed: int = 0) -> torch.Tensor:
    """Continuous columns on their own scales, then two columns of category codes (14, 15): every value in
    the continuous columns distinct, so where a value came from can be told."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-1, 2, COLUMNS - 2)
    continuous = torch.randn(rows, COLUMNS - 2, generator=generator) * scales + 3.0
    codes = torch.stack([torch.randint(0, 5, (rows,), generator=generator) * 10,
                         torch.randint(1, 3, (rows,), generator=generator)], dim=1)
    return torch.cat([continuous, codes.float()], dim=1)


X = _table()
CATEGORICAL = [14, 15]
table_stats.register("tabular-test", _table(8192, seed=1), categorical=CATEGORICAL)


def _run(steps, x=X, seed=5, keys=KEYS, **kwargs):
    return Pipeline.from_spec(steps)(x, seed=seed, keys=keys, **kwargs)


def _at_rate(count: int, trials: int, p: float) -> bool:
    """A binomial count within 5 standard deviations of its mean."""
    return abs(count - trials * p) <= 5 * math.sqrt(trials * p * (1 - p))


@pytest.mark.parametrize("step", [{"op": "feature_mask", "p": 0.3}, {"op": "feature_mask", "fill": "marginal",
                                                                      "p": 0.3}, {"op": "swap_noise"}])
def test_entries_are_masked_and_swapped_at_rate_p(step):
    out = _run([step])
    params = out.params[0]
    mask = params["mask"]
    assert mask.shape == (ROWS, COLUMNS) and mask.dtype == torch.bool
    p = step.get("p", 0.15)
    assert _at_rate(int(mask.sum()), mask.numel(), p)
    assert all(_at_rate(int(count), ROWS, p) for count in mask.sum(0))  # in every column
    assert torch.equal(out.x[~mask], X[~mask])


def test_feature_noise_is_applied_to_samples_at_rate_p():
    out = _run([{"op": "feature_noise", "std": [1.0] * COLUMNS, "p": 0.3}])
    applied = out.params[0]["applied"]
    assert applied.shape == (ROWS,) and _at_rate(int(applied.sum()), ROWS, 0.3)
    assert torch.equal(out.x[~applied], X[~applied]) and bool((out.x[applied] != X[applied]).all())


@pytest.mark.parametrize("source", [{"stats": "tabular-test"}, {"std": [2.0] * COLUMNS, "categorical": CATEGORICAL},
                                    {"batch_stats": True, "categorical": CATEGORICAL}])
def test_categorical_columns_are_never_noised(source):
    out = _run([{"op": "feature_noise", "sigma": 1.0, "p": 1.0, **source}])
    assert torch.equal(out.x[:, CATEGORICAL], X[:, CATEGORICAL])
    assert bool((out.x[:, :3] != X[:, :3]).all())


def test_masked_categorical_columns_take_only_values_of_their_column():
    marginal = _run([{"op": "feature_mask", "fill": "marginal", "p": 0.5, "categorical": CATEGORICAL}])
    mask = marginal.params[0]["mask"]
    for column in CATEGORICAL:
        assert mask[:, column].any()
        assert set(marginal.x[:, column].tolist()) <= set(X[:, column].tolist())
    for fill in ("zero", "mean"):  # no value of a category column to give: those stay whole
        out = _run([{"op": "feature_mask", "p": 0.5, "fill": fill, "stats": "tabular-test"}])  # the table's columns
        assert not out.params[0]["mask"][:, CATEGORICAL].any()
        assert torch.equal(out.x[:, CATEGORICAL], X[:, CATEGORICAL])


def test_zero_and_mean_fill_give_zero_and_the_columns_mean():
    mean = [float(v) for v in range(COLUMNS)]
    out = _run([{"op": "feature_mask", "p": 0.4, "fill": "mean", "mean": mean}])
    mask = out.params[0]["mask"]
    assert torch.equal(out.x[mask], torch.tensor(mean).expand(ROWS, -1)[mask])
    zero = _run([{"op": "feature_mask", "p": 0.4}])
    assert bool((zero.x[zero.params[0]["mask"]] == 0).all())
    batch = _run([{"op": "feature_mask", "p": 0.4, "fill": "mean", "batch_stats": True}])
    assert torch.equal(batch.x[mask], X.mean(0).expand(ROWS, -1)[mask])  # the same mask: drawn per sample


@pytest.mark.parametrize("source, std", [({"std": [0.5 * (j + 1) for j in range(COLUMNS)]},
                                          torch.arange(1, COLUMNS + 1) * 0.5),
                                         ({"stats": "tabular-test"}, table_stats.get("tabular-test").std),
                                         ({"batch_stats": True}, X.std(0, correction=0))])
def test_noise_std_per_column_is_sigma_times_the_columns_std(source, std):
    sigma = 0.2
    out = _run([{"op": "feature_noise", "sigma": sigma, "p": 1.0, "categorical": [], **source}])
    noise = (out.x - X).double()
    expected = sigma * std.double()
    ratio = noise.std(0) / expected
    # the sample std of 4096 normals is within 4% of the true one (> 5 standard errors of 1.1%)
    assert bool(((ratio - 1).abs() < 0.04).all()), ratio
    assert bool((noise.mean(0).abs() < 5 * expected / math.sqrt(ROWS)).all())


@pytest.mark.parametrize("step", [{"op": "swap_noise", "p": 0.3}, {"op": "feature_mask", "fill": "marginal"}])
def test_swapped_values_come_from_the_same_column_of_another_row(step):
    out = _run([step])
    mask, partner = out.params[0]["mask"], out.params[0]["partner"]
    own = torch.arange(ROWS)[:, None].expand(-1, COLUMNS)
    assert torch.equal(partner[~mask], own[~mask]) and bool((partner[mask] != own[mask]).all())
    assert torch.equal(out.x, X.gather(0, partner))
    continuous = mask[:, :14]
    assert bool((out.x[:, :14][continuous] != X[:, :14][continuous]).all())  # distinct values: really another row
    used = torch.bincount(partner[mask], minlength=ROWS)  # partners spread over the whole request
    assert int((used > 0).sum()) > 0.9 * ROWS


def test_cutmix_label_weight_is_the_share_of_columns_swapped():
    labels = torch.arange(ROWS) % 7
    out = Pipeline.from_spec({"modality": "tabular", "steps": [{"op": "cutmix"}]})(
        X, labels, seed=2, keys=KEYS, num_classes=7)
    params = out.params[0]
    columns, partner, lam = params["columns"], params["partner"], params["lam"]
    assert columns.shape == (ROWS, COLUMNS) and "region" not in params
    share = columns.sum(1).double() / COLUMNS
    assert torch.equal(lam.double(), (1 - share).float().double())
    assert torch.equal(out.x, torch.where(columns, X[partner], X))
    assert torch.allclose(out.labels.sum(1), torch.ones(ROWS))
    onehot = torch.nn.functional.one_hot(labels, 7).float()
    assert torch.allclose(out.labels, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[partner])
    swapped = columns.sum(1)
    assert int(swapped.min()) >= 0 and len(set(swapped.tolist())) > COLUMNS // 2  # counts of every size
    assert _at_rate(int(columns[:, 0].sum()), ROWS, float(share.mean()))  # every column equally likely


def test_mixup_blends_tables_and_mixing_alone_on_a_table_needs_the_modality():
    out = Pipeline.from_spec({"modality": "tabular", "steps": [{"op": "mixup"}]})(X[:64], seed=1, keys=KEYS[:64])
    lam, partner = out.params[0]["lam"], out.params[0]["partner"]
    assert torch.allclose(out.x, lam[:, None] * X[:64] + (1 - lam[:, None]) * X[:64][partner], atol=1e-4)
    with pytest.raises(ValueError, match=r"rank 2 .*a table \(B, F\)\? declare modality: tabular"):
        Pipeline.from_spec([{"op": "mixup"}])(X[:8])


def test_feature_noise_replays_in_any_batch_composition():
    steps = [{"op": "feature_noise", "stats": "tabular-test", "p": 0.7},
             {"op": "feature_mask", "fill": "mean", "stats": "tabular-test"}]
    full = _run(steps, x=X[:64], keys=KEYS[:64]).x
    rows = torch.tensor([40, 3, 17, 9])
    assert torch.equal(_run(steps, x=X[rows], keys=KEYS[rows]).x, full[rows])
    assert not any(step.mixes_samples for step in Pipeline.from_spec(steps).steps)


@pytest.mark.parametrize("step", [{"op": "swap_noise"}, {"op": "feature_mask", "fill": "marginal"},
                                  {"op": "feature_noise", "batch_stats": True}])
def test_steps_that_read_other_rows_mix_samples_and_replay_with_their_request(step):
    pipe = Pipeline.from_spec([step])
    assert pipe.steps[0].mixes_samples  # the server never merges two requests for it
    first, again = (pipe(X[:64], seed=8, keys=KEYS[:64]) for _ in range(2))
    assert torch.equal(first.x, again.x)
    if "mask" in first.params[0]:  # which entries are masked is each sample's own, whatever its request
        part = pipe(X[10:20], seed=8, keys=KEYS[10:20])
        assert torch.equal(part.params[0]["mask"], first.params[0]["mask"][10:20])
    alone = pipe(X[:1], seed=8, keys=KEYS[:1])
    assert torch.equal(alone.x, X[:1]) or step["op"] == "feature_noise"


@pytest.mark.parametrize("step, error, message", [
    ({"op": "feature_noise"}, SpecError, r"step 1 \(feature_noise\): no column std: give field 'stats'.*'std'.*"
                                         r"'batch_stats': true"),
    ({"op": "feature_noise", "stats": "tabular-test", "std": [1.0] * COLUMNS}, SpecError,
     r"fields 'stats' and 'std' both give the column std: give exactly one"),
    ({"op": "feature_noise", "std": [1.0] * 5}, ValueError,
     r"step 1 \(feature_noise\): field 'std' has 5 values \(one per column\) but the batch has 16 columns"),
    ({"op": "feature_noise", "stats": "no-such-table"}, SpecError, r"field 'stats': no table named 'no-such-table'"),
    ({"op": "feature_mask", "fill": "mean"}, SpecError, r"no column mean: give field 'stats'"),
    ({"op": "feature_mask", "mean": [0.0] * COLUMNS}, SpecError, r"field 'mean' gives a column mean, which this "
                                                                 r"step does not read \(fill zero"),
    ({"op": "feature_mask", "categorical": [3, 16]}, ValueError,
     r"step 1 \(feature_mask\): field 'categorical': column 16 is out of range for a batch of 16 columns"),
    ({"op": "feature_noise", "std": [-1.0]}, SpecError, r"field 'std': expected a list of 1 to 4096 numbers"),
])
def test_refusals_name_the_field(step, error, message):
    with pytest.raises(error, match=message):
        Pipeline.from_spec([step]).check(X[:4])


def test_refusals_of_the_batch_itself():
    with pytest.raises(ValueError, match="x: tabular batches must be float, got uint8"):
        Pipeline.from_spec([{"op": "swap_noise"}]).check(X[:4].to(torch.uint8))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, F\), got rank 3"):
        Pipeline.from_spec([{"op": "swap_noise"}]).check(X[:4, None])
    with pytest.raises(ValueError, match="field 'stats': table 'tabular-test' has 16 columns but the batch has 15"):
        Pipeline.from_spec([{"op": "feature_noise", "stats": "tabular-test"}]).check(X[:4, :15])
