"""Strength that follows the gap: ``AdaptiveStrength``, strength on the wire (RemoteAugment, RemoteDataset,
a raw request), on a real UCR set."""

from __future__ import annotations

import json

import grpc
import pytest
import torch
from torch.utils.data import DataLoader

from augserve import Pipeline
from augserve.client import Client, IndexedDataset, InvalidArgument, RemoteAugment, RemoteDataset
from augserve.experiments.series import RECIPE, run_series
from augserve.experiments.ucr import load_ucr
from augserve.in_process import InProcessAugmenter
from augserve.random import sample_keys
from augserve.trainer import AdaptiveStrength, EpochRecord, History, chance_accuracy, plot_learning_curves
from augserve.trainer.monitor import curve_series, curves_json
from server_harness import RunningServer, request, tensor

PIPELINE = "timeseries-um"


class _Carrier:
    strength = None


class _Trainer:
    """What the callback needs of a Trainer: ``evaluate`` on the clean training data."""

    def __init__(self, train_accuracy: float):
        self.train_accuracy = train_accuracy

    def evaluate(self, loader):
        return 0.0, self.train_accuracy


def _epoch(callback, train_accuracy: float, val_accuracy: float, epoch: int = 0) -> EpochRecord:
    """One epoch: ``train_accuracy`` is what the clean evaluation returns (the batches read 0.5)."""
    record = EpochRecord(epoch, 1.0, 0.5, 1.0, val_accuracy)
    callback(_Trainer(train_accuracy), record)
    return record


def test_strength_rises_while_the_gap_is_above_target_and_falls_below_it_within_limits():
    carrier = _Carrier()
    callback = AdaptiveStrength(carrier, target_gap=0.1, clean_train=[], step=0.25, start=1.0, limits=(0.5, 2.0),
                                ema=0.0)
    assert carrier.strength == 1.0
    used = [_epoch(callback, 1.0, 0.7, e).strength for e in range(6)]  # gap 0.3 > 0.1: up to the limit
    assert used == [1.0, 1.25, 1.5, 1.75, 2.0, 2.0] and carrier.strength == 2.0
    used = [_epoch(callback, 0.9, 0.85, e).strength for e in range(8)]  # gap 0.05 < 0.1: down to the limit
    assert used == [2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.5] and carrier.strength == 0.5
    assert len(callback.history) == 14 and callback.history[0] == (1.0, pytest.approx(0.3))


def test_by_default_the_gap_is_read_from_the_training_batches_as_ada_does():
    carrier = _Carrier()
    callback = AdaptiveStrength(carrier, target_gap=0.05, step=0.1, ema=0.0)
    record = EpochRecord(0, 1.0, 0.9, 1.0, 0.7)  # augmented batches 90%, validation 70%: overfitting, go up
    callback(None, record)
    assert record.signal == pytest.approx(0.2) and carrier.strength == pytest.approx(1.1)
    record = EpochRecord(1, 1.0, 0.6, 1.0, 0.7)  # the augmented batches are now harder than unseen data: go down
    callback(None, record)
    assert record.signal == pytest.approx(-0.1) and record.strength == pytest.approx(1.1)
    assert carrier.strength == pytest.approx(1.0)


def test_the_gap_is_smoothed_so_one_noisy_epoch_does_not_flip_the_direction():
    carrier = _Carrier()
    callback = AdaptiveStrength(carrier, target_gap=0.1, clean_train=[], step=0.1, ema=0.8)
    for epoch in range(5):
        _epoch(callback, 1.0, 0.6, epoch)  # gap 0.4
    before = carrier.strength
    record = _epoch(callback, 1.0, 1.0, 5)  # one epoch with no gap: smoothed 0.8 * ~0.4 stays above target
    assert record.signal > 0.1 and carrier.strength == pytest.approx(before + 0.1)


class _ViewsTrainer:
    """Scores views the harder the stronger they are: accuracy 1 - strength / 4 at any pass."""

    def __init__(self, views):
        self.views, self.passes = views, 0

    def evaluate(self, loader):
        assert loader is self.views
        self.passes += 1
        return 0.0, 1.0 - loader.strength / 4


def test_on_augmented_validation_views_the_strength_settles_at_the_target_ratio():
    """Clean validation 0.8; views at strength s score 1 - s/4, a ratio of (1 - s/4) / 0.8: 0.75 at s = 1.6. The
    strength climbs by fixed steps until the ratio falls below the target, then steps around that point."""
    carrier, views = _Carrier(), _Carrier()
    callback = AdaptiveStrength(carrier, views=views, target_ratio=0.75, passes=3, step=0.1, start=0.0,
                                limits=(0.0, 3.0), ema=0.0)
    trainer = _ViewsTrainer(views)
    records = [EpochRecord(epoch, 1.0, 1.0, 1.0, 0.8) for epoch in range(40)]
    for record in records:
        callback(trainer, record)
    used = [r.strength for r in records]
    assert used[:3] == pytest.approx([0.0, 0.1, 0.2]) and trainer.passes == 3 * 40
    assert all(1.5 <= s <= 1.75 for s in used[20:])  # around 1.6, never at a limit
    assert records[0].signal == pytest.approx(1.25) and records[0].signal_name.startswith("augmented")
    assert views.strength == pytest.approx(used[-1])  # the views were drawn at the strength just trained with


def test_views_count_above_chance_so_the_strength_settles_lower_where_guessing_scores_half():
    """Clean validation 0.8 with chance 0.5: the ratio is (1 - s/4 - 0.5) / 0.3, 0.75 at s = 1.1 (not 1.6)."""
    carrier, views = _Carrier(), _Carrier()
    chance = chance_accuracy(torch.tensor([2, 0, 2, 1, 2, 2, 0, 1]))  # guessing class 2 scores 4 of 8
    assert chance == 0.5
    callback = AdaptiveStrength(carrier, views=views, target_ratio=0.75, chance=chance, step=0.1, start=0.0, ema=0.0)
    records = [EpochRecord(epoch, 1.0, 1.0, 1.0, 0.8) for epoch in range(40)]
    for record in records:
        callback(_ViewsTrainer(views), record)
    assert all(1.0 <= r.strength <= 1.2 for r in records[20:])
    assert records[0].signal == pytest.approx(0.5 / 0.3) and records[0].signal_name.endswith("above chance")


def test_while_clean_validation_is_not_above_chance_the_strength_holds_and_no_view_is_scored():
    carrier, views = _Carrier(), _Carrier()
    callback = AdaptiveStrength(carrier, views=views, target_ratio=0.5, chance=0.5, step=0.1, start=1.0, ema=0.0)
    trainer = _ViewsTrainer(views)
    for epoch, clean in enumerate((0.0, 0.5, 0.45)):  # a model that has learned nothing reads as no signal
        record = EpochRecord(epoch, 1.0, 1.0, 1.0, clean)
        callback(trainer, record)
        assert record.signal is None and record.strength == 1.0 and carrier.strength == 1.0
    assert trainer.passes == 0
    records = [EpochRecord(3, 1.0, 1.0, 1.0, 0.9), EpochRecord(4, 1.0, 1.0, 1.0, 0.4)]
    for record in records:  # (0.75 - 0.5) / 0.4 = 0.625 > 0.5: up; then back at chance: held, nothing read
        callback(trainer, record)
    assert carrier.strength == pytest.approx(1.1) and [r.signal for r in records] == [pytest.approx(0.625), None]
    assert callback.at_limit == 0.0 and callback.mean_strength == pytest.approx((4 * 1.0 + 1.1) / 5)
    held = [EpochRecord(epoch, 1.0, 1.0, 1.0, 0.5, strength=1.0, signal_name="s") for epoch in range(3)]
    drawn = json.loads(curves_json("held", curve_series({"views": History(held + records)})))
    assert [s["values"] for s in drawn["series"] if s["series"].startswith("s read")] == [[None] * 3 + [0.625, None]]


def test_epochs_held_at_the_start_are_not_counted_at_a_limit_and_chance_refuses_what_is_not_class_indices():
    carrier, views = _Carrier(), _Carrier()
    callback = AdaptiveStrength(carrier, views=views, target_ratio=0.9, chance=0.5, step=0.1, start=0.0, ema=0.0)
    for epoch, clean in enumerate((0.5, 0.5, 0.5, 0.9, 0.9)):  # held at 0 three times, then read and climbing
        callback(_ViewsTrainer(views), EpochRecord(epoch, 1.0, 1.0, 1.0, clean))
    assert [strength for strength, _ in callback.history] == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.1])
    assert callback.at_limit == 0.5  # of the two epochs that read a signal, one trained at the lower limit
    for labels in (torch.tensor([]), torch.eye(3), torch.tensor([0.0, 1.0]), torch.tensor([-1, 0])):
        with pytest.raises(ValueError, match="expected class indices"):
            chance_accuracy(labels)


@pytest.mark.parametrize("kwargs", [{"views": [], "target_ratio": 1.0}, {"views": [], "passes": 0},
                                    {"views": [], "clean_train": []}, {"views": [], "chance": 1.0}])
def test_bad_view_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="expected views"):
        AdaptiveStrength(_Carrier(), **kwargs)


@pytest.mark.parametrize("kwargs", [{"target_gap": -2.0}, {"step": 0}, {"start": 4.0}, {"ema": 1.0},
                                    {"limits": (1.5, 1.0)}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="expected"):
        AdaptiveStrength(_Carrier(), clean_train=[], **kwargs)


def test_with_the_trainer_in_process_the_strength_is_used_recorded_and_plotted(tmp_path):
    result = run_series("gunpoint", 0, "adaptive", epochs=6)
    history: History = result["history"]
    strengths, setting = [r.strength for r in history.records], dict(RECIPE.adaptive)
    low, high = setting["limits"]
    assert strengths[0] == setting["start"] and all(low <= s <= high for s in strengths)
    assert all(abs(b - a) == pytest.approx(setting["step"]) or b in (low, high)  # a step, or held at a limit
               for a, b in zip(strengths, strengths[1:]))
    assert all(r.signal is not None for r in history.records)
    path = plot_learning_curves({"adaptive": history}, tmp_path / "curves.png")
    assert path.stat().st_size > 10_000


def test_remote_augment_in_process_sends_the_strength_it_holds_each_epoch():
    split = load_ucr("gunpoint")
    loader = DataLoader(IndexedDataset(split.train), batch_size=10, shuffle=False)
    remote = RemoteAugment(loader, InProcessAugmenter(), PIPELINE, seed=3, num_classes=2, strength=0.0, epoch=0)
    first = next(iter(remote))
    assert torch.equal(first.x, split.train.tensors[0][:10])  # strength 0: the series as they are
    remote.strength = 1.0
    second = next(iter(remote))
    expected = Pipeline.from_spec(PIPELINE)(split.train.tensors[0][:10], split.train.tensors[1][:10], seed=3,
                                            keys=sample_keys(torch.arange(10), 1), num_classes=2)
    assert torch.equal(second.x, expected.x)


# --- on the wire ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    running = RunningServer(max_batch=64, max_delay_ms=2.0, max_samples=256)
    yield running
    running.stop()


def _series(n=12):
    return torch.randn(n, 1, 150, generator=torch.Generator().manual_seed(5))


def test_the_request_field_scales_the_pipeline_and_strength_1_is_unset_bit_for_bit(server):
    stub, x = server.stub(), _series()
    unset = tensor(stub.Augment(request(x, PIPELINE, seed=4), timeout=60).x)
    answers = {}
    for strength in (0.0, 0.5, 1.0, 2.0):
        message = request(x, PIPELINE, seed=4)
        message.pipeline.strength = strength
        answers[strength] = tensor(stub.Augment(message, timeout=60).x)
        local = Pipeline.from_spec(PIPELINE).at_strength(strength)(x, seed=4).x
        assert torch.equal(answers[strength], local), strength
    assert torch.equal(answers[1.0], unset) and torch.equal(answers[0.0], x)
    assert not torch.equal(answers[0.5], unset)


def test_a_sample_replays_from_seed_key_and_strength_whatever_the_batch(server):
    with Client(server.target, timeout=60) as client:
        x = _series(8)
        whole = client.augment(x, pipeline=PIPELINE, seed=9, keys=range(8), strength=0.7).x
        part = client.augment(x[[6, 2]], pipeline=PIPELINE, seed=9, keys=[6, 2], strength=0.7).x
        assert torch.equal(part, whole[[6, 2]])
        mapped = list(client.map([(x[:4], None, range(4)), (x[4:], None, range(4, 8))], pipeline=PIPELINE, seed=9,
                                 strength=0.7))
        assert torch.equal(torch.cat([b.x for b in mapped]), whole)


@pytest.mark.parametrize("strength, words", [(-1.0, "strength: expected a number in [0, 10]"),
                                             (11.0, "strength: expected a number in [0, 10]"),
                                             (float("nan"), "strength: expected a number in [0, 10]")])
def test_a_bad_strength_is_invalid_argument_and_the_server_keeps_serving(server, strength, words):
    stub, x = server.stub(), _series(2)
    message = request(x, PIPELINE)
    message.pipeline.strength = strength
    with pytest.raises(grpc.RpcError) as error:
        stub.Augment(message, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.value.details()
    assert error.value.details().startswith("pipeline")
    assert tensor(stub.Augment(request(x, PIPELINE), timeout=60).x).shape == x.shape


def test_a_step_that_cannot_be_scaled_is_refused_by_name(server):
    with Client(server.target, timeout=60) as client, pytest.raises(InvalidArgument, match="auto_augment has no"):
        client.augment(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), pipeline=[{"op": "auto_augment"}], strength=0.5)


def test_remote_dataset_streams_at_the_strength_it_holds(server):
    with Client(server.target, timeout=60) as client:
        remote = RemoteDataset(client, "gunpoint", PIPELINE, 25, seed=1, strength=0.0)
        raw = load_ucr("gunpoint")
        served = torch.cat([raw.train.tensors[0], raw.test.tensors[0]])
        for batch in remote:
            assert torch.equal(batch.x, served[batch.indices])  # strength 0: the dataset as it is
        remote.strength = 1.5
        strong = next(iter(remote))
        assert not torch.equal(strong.x, served[strong.indices])


def test_adaptive_training_fed_by_a_server_equals_training_in_process(server):
    remote = run_series("gunpoint", 0, "adaptive", epochs=3, server=server.target)
    local = run_series("gunpoint", 0, "adaptive", epochs=3)
    assert [r.strength for r in remote["history"].records] == [r.strength for r in local["history"].records]
    assert [r.train_loss for r in remote["history"].records] == [r.train_loss for r in local["history"].records]
    assert remote["test_accuracy"] == local["test_accuracy"] and remote["epochs"] == 3
