"""Augmentation strength that follows the generalization gap (the idea of StyleGAN2-ADA, Karras et al. 2020).

ADA raises its augmentation probability while the discriminator overfits, read from a signal on
its training batches, and lowers it while it does not. ``AdaptiveStrength`` does the same for a
classifier's pipeline: after every epoch it reads how far accuracy on the training batches (as
augmented) runs ahead of validation accuracy, and moves the pipeline's ``strength`` (see
``Pipeline.at_strength``) one step towards the target. The signal limits itself where stronger
augmentation makes the training batches harder to fit: the strength settles where the model fits
its augmented data about as well as unseen data. Where the model fits them as well at any strength
(a small CNN given 200 epochs on 900 images), the gap stays above a target it cannot reach and the
strength climbs to ``limits[1]``: set that to the strongest pipeline you would train with.
"""

from __future__ import annotations

from typing import Iterable


class AdaptiveStrength:
    """``Trainer(..., callbacks=[AdaptiveStrength(augment, target_gap=0.05)])``.

    ``augment`` carries the strength: ``RemoteAugment``, ``RemoteDataset`` or anything with a
    ``strength`` attribute read at the start of each epoch. Each epoch the gap is training accuracy
    minus validation accuracy: on the epoch's (augmented) training batches, or with
    ``clean_train`` on that loader without augmentation (``trainer.evaluate``: the classic
    generalization gap), smoothed as ``ema`` * previous + (1 - ``ema``) * new. The strength rises by
    ``step`` when the smoothed gap is above ``target_gap`` and falls by ``step`` when below, within
    ``limits``. Each epoch's record gets the strength it was trained with (``record.strength``) and
    the gap read (``record.gap``).
    """

    def __init__(self, augment, target_gap: float = 0.05, *, clean_train: Iterable | None = None,
                 step: float = 0.05, start: float = 1.0, limits: tuple[float, float] = (0.0, 3.0), ema: float = 0.5):
        low, high = limits
        if not 0.0 <= low <= start <= high or step <= 0 or not 0.0 <= ema < 1.0 or not -1.0 <= target_gap <= 1.0:
            raise ValueError(f"expected 0 <= limits[0] <= start <= limits[1], step > 0, 0 <= ema < 1 and "
                             f"target_gap in [-1, 1]; got limits {limits}, start {start}, step {step}, ema {ema}, "
                             f"target_gap {target_gap}")
        self.augment, self.target_gap, self.clean_train = augment, target_gap, clean_train
        self.step, self.limits, self.ema = step, (low, high), ema
        self.gap: float | None = None
        self.history: list[tuple[float, float]] = []  # (strength trained with, smoothed gap) per epoch
        augment.strength = start

    def __call__(self, trainer, record) -> None:
        if record.val_accuracy is None:
            raise ValueError("AdaptiveStrength needs a validation loader: Trainer.fit(train, val, ...)")
        train_accuracy = record.train_accuracy if self.clean_train is None else trainer.evaluate(self.clean_train)[1]
        gap = train_accuracy - record.val_accuracy
        self.gap = gap if self.gap is None else self.ema * self.gap + (1.0 - self.ema) * gap
        used = self.augment.strength
        record.strength, record.gap = used, self.gap
        self.history.append((used, self.gap))
        direction = 1.0 if self.gap > self.target_gap else -1.0
        self.augment.strength = min(max(used + direction * self.step, self.limits[0]), self.limits[1])
