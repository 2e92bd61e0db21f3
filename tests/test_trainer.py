"""The trainer's pieces against their reference definitions, and the Trainer loop itself."""

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from augserve.trainer import (DropBlock2d, DropConnectLinear, EarlyStopping, EpochRecord, History,
                              ResidualWithStochasticDepth, SoftTargetCrossEntropy, Trainer, elastic_net_penalty,
                              iterative_magnitude_pruning, l1_penalty, linear_scaling_lr, load_checkpoint,
                              make_permanent, mc_dropout_predict, param_groups, prune_global, prune_layers,
                              set_dropout, sparsity_report, stochastic_depth_rates, warmup_cosine)
from augserve.trainer.pruning import rewind


def mixed_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Flatten(), nn.LayerNorm(16),
                         nn.Linear(16, 8), nn.Dropout(0.1), nn.Linear(8, 2, bias=False))


# --- losses ---------------------------------------------------------------------------------

@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_loss_equals_torch_cross_entropy_for_hard_and_one_hot_labels(epsilon):
    logits, y = torch.randn(16, 7, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 7
    reference = nn.CrossEntropyLoss(label_smoothing=epsilon)(logits, y)
    loss = SoftTargetCrossEntropy(label_smoothing=epsilon)
    assert torch.allclose(loss(logits, y), reference, atol=1e-6)
    assert torch.allclose(loss(logits, F.one_hot(y, 7).float()), reference, atol=1e-6)


def test_labels_smoothed_by_the_server_are_not_smoothed_again(caplog):
    logits, y = torch.randn(8, 5), F.one_hot(torch.arange(8) % 5, 5).float() * 0.9 + 0.02
    loss = SoftTargetCrossEntropy(label_smoothing=0.1)
    with caplog.at_level(logging.INFO, logger="augserve.trainer"):
        once = loss(logits, y, already_smoothed=0.1)
        loss(logits, y, already_smoothed=0.1)
    assert torch.allclose(once, SoftTargetCrossEntropy()(logits, y))
    assert sum("not smoothing them again" in r.message for r in caplog.records) == 1
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftTargetCrossEntropy(1.0)


# --- weight decay -------------------------------------------------------------------------------

def test_param_groups_decay_exactly_the_conv_and_linear_weights():
    model = nn.Sequential(mixed_model(), nn.Embedding(10, 4))
    decayed, exempt = param_groups(model, 0.05)
    conv, linear_a, linear_b = model[0][0], model[0][5], model[0][7]
    assert {id(p) for p in decayed["params"]} == {id(conv.weight), id(linear_a.weight), id(linear_b.weight)}
    assert decayed["weight_decay"] == 0.05 and exempt["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(exempt["params"]) == len(list(model.parameters()))
    torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)  # accepted as optimizer groups


def test_l1_and_elastic_net_penalties_follow_their_definitions():
    model = mixed_model()
    weights = [model[0].weight, model[5].weight, model[7].weight]
    l1 = sum(w.abs().sum() for w in weights)
    l2 = sum(w.pow(2).sum() for w in weights)
    assert torch.allclose(l1_penalty(model, 0.01), 0.01 * l1)
    assert torch.allclose(elastic_net_penalty(model, 0.01, 0.3), 0.01 * (0.3 * l1 + 0.35 * l2))


# --- early stopping -------------------------------------------------------------------------------

def classic_patience_rule(values, patience, min_delta, mode):
    """Keras' EarlyStopping, written out: (epoch it stops at or None, best value)."""
    best, wait = (math.inf if mode == "min" else -math.inf), 0
    for epoch, value in enumerate(values):
        better = value < best - min_delta if mode == "min" else value > best + min_delta
        if better:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best
    return None, best


@pytest.mark.parametrize("trial", range(40))
def test_early_stopping_matches_the_classic_rule_on_random_sequences(trial):
    generator = torch.Generator().manual_seed(trial)
    values = (torch.rand(60, generator=generator) + torch.linspace(1.0, 0.0, 60) * (trial % 3)).tolist()
    patience, min_delta, mode = 1 + trial % 7, [0.0, 0.01, 0.1][trial % 3], ["min", "max"][trial % 2]
    expected_stop, expected_best = classic_patience_rule(values, patience, min_delta, mode)
    early, stopped = EarlyStopping(patience, min_delta, mode), None
    for epoch, value in enumerate(values):
        if early.step(value):
            stopped = epoch
            break
    assert stopped == expected_stop and early.best == expected_best


def test_early_stopping_restores_the_best_weights():
    model, early = nn.Linear(2, 1), EarlyStopping(patience=2)
    best = None
    for epoch, loss in enumerate([3.0, 1.0, 2.0, 2.5]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        if loss == 1.0:
            best = model.weight.clone()
        early.step(loss, model)
    early.restore(model)
    assert torch.equal(model.weight, best) and early.best_epoch == 1


# --- pruning ------------------------------------------------------------------------------------

def test_pruning_reaches_the_requested_sparsity_exactly():
    model = mixed_model()
    prune_layers(model, 0.3)
    report = sparsity_report(model)
    for name in ("0", "5", "7"):
        assert report[name]["zeros"] == round(0.3 * report[name]["total"])
    model = mixed_model()
    prune_global(model, 0.55)
    total = sparsity_report(model)["total"]
    assert total["zeros"] == round(0.55 * total["total"])
    weight_before = model[5].weight.clone()
    make_permanent(model)
    assert not prune.is_pruned(model) and "5.weight" in model.state_dict()
    assert torch.equal(model[5].weight, weight_before)
    assert sparsity_report(model)["total"]["zeros"] == total["zeros"]


def test_imp_rewinds_survivors_to_the_saved_weights_and_reaches_the_target():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def train(m):  # stands in for training: records what it starts from, then moves every weight
        seen.append([(layer.weight.clone(), getattr(layer, "weight_mask", torch.ones_like(layer.weight)).clone())
                     for layer in (m[0], m[2])])
        with torch.no_grad():
            for layer in (m[0], m[2]):
                target = layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight
                target.add_(torch.randn_like(target))

    sparsities = iterative_magnitude_pruning(model, train, target_sparsity=0.8, rounds=3, rewind_state=saved)
    assert len(seen) == 4 and sparsities == sorted(sparsities)
    assert sparsities[-1] == pytest.approx(0.8, abs=2 / 750)
    for snapshot in seen[1:]:  # every round after the first starts from the rewound survivors
        for (weight, mask), key in zip(snapshot, ("0.weight", "2.weight")):
            assert torch.equal(weight, saved[key] * mask)
    rewind(model, saved)
    assert torch.equal(model[0].bias, saved["0.bias"])


# --- dropout family -----------------------------------------------------------------------------

def test_dropblock_drops_contiguous_blocks_near_the_requested_rate():
    block, p = 5, 0.2
    drop = DropBlock2d(p, block)
    out = drop(torch.ones(16, 8, 48, 48))
    dropped = out == 0
    rate = dropped.float().mean().item()
    assert abs(rate - p) < 0.06, rate
    # every dropped pixel lies inside an all-dropped block x block square
    full_squares = -F.max_pool2d(-dropped.float(), block, stride=1)  # 1 where a whole square is dropped
    covered = F.max_pool2d(F.pad(full_squares, (block - 1,) * 4), block, stride=1)  # pixels inside one
    assert bool((covered[dropped] == 1).all())
    assert torch.equal(drop.eval()(torch.ones(2, 2, 8, 8)), torch.ones(2, 2, 8, 8))


def test_stochastic_depth_follows_the_linear_decay_rule():
    rates = stochastic_depth_rates(4, 0.5)
    survival = [1 - r for r in rates]
    assert survival == pytest.approx([1 - layer / 4 * (1 - 0.5) for layer in range(1, 5)])
    torch.manual_seed(0)
    block = ResidualWithStochasticDepth(nn.Identity(), p=0.3)
    x = torch.ones(20000, 1)
    dropped = (block(x) == 1).float().mean().item()  # x + 0 where the branch was dropped
    assert abs(dropped - 0.3) < 0.02
    assert torch.equal(block.eval()(x), 2 * x)


def test_dropconnect_drops_weights_and_keeps_the_expectation():
    torch.manual_seed(0)
    layer = DropConnectLinear(50, 40, p=0.4)
    x = torch.randn(3, 50)
    samples = torch.stack([layer(x) for _ in range(3000)])
    plain = F.linear(x, layer.weight, layer.bias)
    assert torch.allclose(samples.mean(0), plain, atol=0.1)
    assert torch.equal(layer.eval()(x), plain)


def test_mc_dropout_varies_only_dropout_and_set_dropout_sets_every_rate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    model(torch.randn(64, 6))  # fill the running stats
    stats = model[1].running_mean.clone()
    mean, variance = mc_dropout_predict(model, torch.randn(10, 6), passes=30)
    assert mean.shape == variance.shape == (10, 3) and bool((variance > 0).any())
    assert torch.allclose(mean.sum(1), torch.ones(10)) and torch.equal(model[1].running_mean, stats)
    assert set_dropout(model, 0.1) == 1 and model[3].p == 0.1


# --- schedules and the loop -------------------------------------------------------------------------

def test_linear_scaling_and_warmup_cosine():
    assert linear_scaling_lr(0.1, 1024) == pytest.approx(0.4)
    kw = dict(total_steps=110, warmup_steps=10, base_lr=1.0, min_lr=0.1)
    assert warmup_cosine(0, **kw) == pytest.approx(0.1) and warmup_cosine(9, **kw) == pytest.approx(1.0)
    assert warmup_cosine(10, **kw) == pytest.approx(1.0) and warmup_cosine(110, **kw) == pytest.approx(0.1)
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    data = [(torch.randn(8, 4, generator=torch.Generator().manual_seed(i)), torch.arange(8) % 3) for i in range(4)]
    big = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(data[::2], data[1::2])]
    models = []
    for batches, accumulate in ((data, 2), (big, 1)):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), accumulate=accumulate, device="cpu",
                progress=False).fit(batches, epochs=1)
        models.append(model)
    assert torch.allclose(models[0].weight, models[1].weight, atol=1e-6)


def test_trainer_saves_the_best_checkpoint_calls_back_and_stops_early(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    batches = list(zip(x.split(16), y.split(16)))
    model, records = nn.Linear(5, 3), []
    trainer = Trainer(model, torch.optim.AdamW(param_groups(model, 0.01), lr=0.05), device="cpu", progress=False,
                      early_stopping=EarlyStopping(patience=3), checkpoint=tmp_path / "best.pt",
                      config={"lr": 0.05}, callbacks=[lambda t, r: records.append(r)])
    history = trainer.fit(batches, batches[:1], epochs=200)
    assert len(records) == len(history.records) < 200  # stopped early
    saved = load_checkpoint(tmp_path / "best.pt")
    assert saved["config"] == {"lr": 0.05} and saved["val_loss"] == pytest.approx(trainer.best_val_loss)
    assert saved["epoch"] == trainer.early_stopping.best_epoch
    assert trainer.evaluate(batches[:1])[0] == pytest.approx(trainer.best_val_loss, rel=1e-5)  # best restored


def test_an_empty_validation_loader_is_refused_not_read_as_a_perfect_loss():
    model = nn.Linear(5, 3)
    trainer = Trainer(model, torch.optim.AdamW(model.parameters()), device="cpu", progress=False,
                      early_stopping=EarlyStopping(patience=3))
    batches = [(torch.randn(8, 5), torch.randint(0, 3, (8,)))]
    with pytest.raises(ValueError, match="no samples"):
        trainer.evaluate([])
    with pytest.raises(ValueError, match="no samples"):
        trainer.fit(batches, [], epochs=5)
    assert trainer.best_val_loss == math.inf and trainer.early_stopping.epoch == -1


def curve(train, val, train_accuracy=1.0, val_accuracy=0.95):
    return History([EpochRecord(i, t, train_accuracy, v, val_accuracy) for i, (t, v) in enumerate(zip(train, val))])


def test_learning_curve_readings():
    improving = curve([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [1.1, 0.9, 0.7, 0.6, 0.5, 0.4])
    assert improving.diagnosis().startswith("still improving") and improving.val_trend() < 0
    overfit = curve([0.5, 0.3, 0.2, 0.1, 0.05, 0.02], [0.6, 0.5, 0.55, 0.6, 0.7, 0.8])
    assert overfit.diagnosis().startswith("overfitting")
    assert overfit.generalization_gap() == pytest.approx(0.78) and overfit.overfitting_ratio() == pytest.approx(40)
    under = curve([1.2] * 6, [1.25] * 6, train_accuracy=0.6, val_accuracy=0.55)
    assert under.diagnosis().startswith("underfitting")
    assert curve([0.1] * 6, [0.11] * 6).diagnosis().startswith("converged")
    early_stopped = curve([1.0] * 8, [0.3, 0.2, 0.25, 0.22, 0.26, 0.21, 0.24, 0.22], train_accuracy=0.8)
    assert early_stopped.diagnosis().startswith("converged")  # noisy after its best: not "still improving"


def test_learning_curves_draw_augmented_batches_and_clean_data_labelled_with_integer_epochs(tmp_path):
    import json

    import matplotlib.pyplot as plt

    from augserve.trainer.monitor import learning_curve_figure, plot_learning_curves

    torch.manual_seed(0)
    x, y = torch.randn(48, 5), torch.randint(0, 3, (48,))
    clean = list(zip(x.split(16), y.split(16)))
    noisy = [(xb + torch.randn_like(xb), yb) for xb, yb in clean]  # stands in for augmented batches
    model = nn.Linear(5, 3)
    trainer = Trainer(model, torch.optim.AdamW(model.parameters(), lr=0.05), device="cpu", progress=False)
    history = trainer.fit(noisy, clean[:1], epochs=3, train_eval=clean)
    history.augmented = True
    assert history.records[-1].train_clean_accuracy == trainer.evaluate(clean)[1]  # the table's number
    plot_learning_curves({"regularized": history}, tmp_path / "curves.png")
    series = {(s["series"], s["metric"]): s for s in json.loads((tmp_path / "curves.json").read_text())["series"]}
    assert {name for name, metric in series if metric == "accuracy %"} == {
        "train (augmented batches)", "train (clean)", "validation (clean)"}
    assert series["train (clean)", "accuracy %"]["values"] == pytest.approx(  # kept to 4 decimals
        [100 * r.train_clean_accuracy for r in history.records], abs=5e-5)
    assert series["train (clean)", "accuracy %"]["epoch"] == [1, 2, 3]
    figure = learning_curve_figure({"regularized": history})
    figure.canvas.draw()
    for axis in figure.axes:
        low, high = axis.get_xlim()
        ticks = [t for t in axis.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    labels = {line.get_label() for line in figure.axes[1].get_lines()}
    plt.close(figure)
    assert {"regularized: train (augmented batches)", "regularized: train (clean)"} <= labels


def test_one_seed_is_reported_as_one_seed():
    from augserve.experiments.digits import regularization_table
    from augserve.experiments.fashion import summary_table
    from augserve.trainer.monitor import percent_mean_sd, seeds_text

    assert percent_mean_sd([0.9025]) == "90.2" and percent_mean_sd([0.9, 0.8]) == "85.0 ± 7.1"
    assert seeds_text(1) == "1 seed" and seeds_text(3) == "3 seeds"
    run = {"seed": 0, "epochs": 4, "train_accuracy": 0.9025, "test_accuracy": 0.85, "gap": 0.0525,
           "diagnosis": "converged: fine"}
    table = "\n".join(regularization_table([{**run, "regularized": False}, {**run, "regularized": True}]))
    assert "±" not in table and "90.25%" in table
    fashion = {"seed": 0, "configuration": "plain", "test_accuracy": 0.8, "train_accuracy": 0.9, "val_accuracy": 0.7,
               "mean_strength": None}
    assert "±" not in "\n".join(summary_table([fashion], ("plain",)))
