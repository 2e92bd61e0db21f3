"""Augmentation strength that follows a signal of overfitting (the idea of StyleGAN2-ADA, Karras et al. 2020).

ADA raises its augmentation probability while the discriminator overfits, read from a signal on
its training batches, and lowers it while it does not, by fixed-size steps. ``AdaptiveStrength``
does the same for a classifier's pipeline, moving its ``strength`` (see ``Pipeline.at_strength``)
one step towards a target after every epoch, on one of two signals:

- the gap (default): accuracy on the training batches (as augmented) minus validation accuracy.
  It limits itself only where stronger augmentation makes the training batches harder to fit;
  a model that fits them at any strength (a small CNN given 200 epochs on 900 images) keeps a gap
  above any target it can reach, and the strength climbs to ``limits[1]``.
- views: accuracy on augmented views of the validation images over accuracy on the clean ones,
  both counted above ``chance`` (what guessing the largest class scores). Stronger augmentation
  lowers it and the model never trains on those images, so it cannot memorize them: any target
  in (0, 1) is reachable, and the strength settles where augmented views keep ``target_ratio``
  of what the model knows of the clean ones. Counted from zero instead, a model still near
  chance reads about 1 (it knows nothing either view could lose) and the strength climbs while
  the model has not learned yet; so while clean validation accuracy is not above chance the
  strength holds.
"""

from __future__ import annotations

import statistics
from typing import Iterable

import torch


def chance_accuracy(labels: torch.Tensor) -> float:
    """The accuracy of always guessing the largest class of ``labels`` (B,) class indices: the views signal's
    zero."""
    if labels.dim() != 1 or not len(labels) or labels.dtype.is_floating_point or bool((labels < 0).any()):
        raise ValueError(f"chance_accuracy: expected class indices (B,) >= 0 with B >= 1, got {labels.dtype} of "
                         f"shape {tuple(labels.shape)}")
    return torch.bincount(labels).max().item() / len(labels)


class AdaptiveStrength:
    """``Trainer(..., callbacks=[AdaptiveStrength(augment, target_gap=0.05)])``.

    ``augment`` carries the strength: ``RemoteAugment``, ``RemoteDataset`` or anything with a
    ``strength`` attribute read at the start of each epoch. The gap signal is training accuracy
    minus validation accuracy: on the epoch's (augmented) training batches, or with
    ``clean_train`` on that loader without augmentation (``trainer.evaluate``: the classic
    generalization gap). The views signal, chosen by passing ``views`` (the validation data
    augmented as training is, e.g. a ``RemoteAugment`` over the validation loader; its strength
    is set to the one just trained with), is the mean accuracy of ``passes`` passes over it (each
    pass draws new views) divided by the epoch's clean validation accuracy, both less ``chance``
    (the largest class's share of the validation data); no reading, and no step, while clean
    accuracy is not above ``chance``. Either is smoothed as
    ``ema`` * previous + (1 - ``ema``) * new; the strength rises by ``step`` while the smoothed
    signal is above its target (``target_gap``, ``target_ratio``) and falls by ``step`` while it
    is below, within ``limits``. Each epoch's record gets the strength it was trained with
    (``record.strength``) and the smoothed signal (``record.signal``; None for an epoch that held).
    ``chance`` is 0 unless given: pass ``chance_accuracy(validation_labels)``.
    """

    def __init__(self, augment, target_gap: float = 0.05, *, clean_train: Iterable | None = None,
                 views: Iterable | None = None, target_ratio: float = 0.9, passes: int = 4, chance: float = 0.0,
                 step: float = 0.05, start: float = 1.0, limits: tuple[float, float] = (0.0, 3.0), ema: float = 0.5):
        low, high = limits
        if not 0.0 <= low <= start <= high or step <= 0 or not 0.0 <= ema < 1.0 or not -1.0 <= target_gap <= 1.0:
            raise ValueError(f"expected 0 <= limits[0] <= start <= limits[1], step > 0, 0 <= ema < 1 and "
                             f"target_gap in [-1, 1]; got limits {limits}, start {start}, step {step}, ema {ema}, "
                             f"target_gap {target_gap}")
        if views is not None and (clean_train is not None or not 0.0 < target_ratio < 1.0 or passes < 1
                                  or not 0.0 <= chance < 1.0):
            raise ValueError(f"expected views without clean_train (they are two signals), target_ratio in (0, 1), "
                             f"passes >= 1 and chance in [0, 1); got target_ratio {target_ratio}, passes {passes}, "
                             f"chance {chance}")
        self.augment, self.clean_train, self.views = augment, clean_train, views
        self.target = target_gap if views is None else target_ratio
        self.passes, self.chance, self.step, self.limits, self.ema = passes, chance, step, (low, high), ema
        self.signal: float | None = None
        self.history: list[tuple[float, float | None]] = []  # (strength trained with, smoothed signal or None)
        augment.strength = start

    @property
    def signal_name(self) -> str:
        """What ``signal`` reads, for plots and tables."""
        return "gap" if self.views is None else "augmented / clean validation accuracy above chance"

    def _reading(self, trainer, record) -> float | None:
        if self.views is None:
            train = record.train_accuracy if self.clean_train is None else trainer.evaluate(self.clean_train)[1]
            return train - record.val_accuracy
        if record.val_accuracy <= self.chance:  # nothing learned that a view could lose: no signal
            return None
        self.views.strength = self.augment.strength
        augmented = statistics.mean(trainer.evaluate(self.views)[1] for _ in range(self.passes))
        return (augmented - self.chance) / (record.val_accuracy - self.chance)

    def __call__(self, trainer, record) -> None:
        if record.val_accuracy is None:
            raise ValueError("AdaptiveStrength needs a validation loader: Trainer.fit(train, val, ...)")
        reading = self._reading(trainer, record)
        if reading is not None:
            self.signal = reading if self.signal is None else self.ema * self.signal + (1.0 - self.ema) * reading
        used = self.augment.strength
        shown = None if reading is None else self.signal
        record.strength, record.signal, record.signal_name = used, shown, self.signal_name
        self.history.append((used, shown))
        if reading is not None:
            direction = 1.0 if self.signal > self.target else -1.0
            self.augment.strength = min(max(used + direction * self.step, self.limits[0]), self.limits[1])

    @property
    def mean_strength(self) -> float:
        """The strength trained with, averaged over the epochs so far."""
        return statistics.mean(strength for strength, _ in self.history)

    @property
    def at_limit(self) -> float:
        """The share of the epochs that read the signal which trained at a limit: holding before the model beats
        chance is waiting for a signal, not being pinned by one."""
        read = [strength for strength, signal in self.history if signal is not None]
        return statistics.mean(strength in self.limits for strength in read) if read else 0.0
