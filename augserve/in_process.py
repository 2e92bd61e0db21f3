"""In-process augmentation with the client's interface, so one data path serves both cases.

``RemoteAugment(loader, InProcessAugmenter(), pipeline)`` runs the pipeline here instead of on
a server, with the same keys and so the same samples a server would return.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from augserve.client.batch import Batch
from augserve.client.codec import split_item
from augserve.pipeline import Pipeline


class InProcessAugmenter:
    """Duck-types ``Client.map`` with a local ``Pipeline`` (``prefetch`` has nothing to overlap here)."""

    def map(self, batches: Iterable, *, pipeline, seed: int = 0, num_classes: int | None = None,
            out_dtype: str | None = None, prefetch: int = 1, defer_normalize: bool = False,
            strength: float | None = None) -> Iterator[Batch]:
        compiled, deferred = Pipeline.from_spec(pipeline).at_strength(1.0 if strength is None else strength), None
        if defer_normalize:
            compiled, deferred = compiled.deferring_normalize()
        for item in batches:
            x, labels, keys, lengths = split_item(item)
            out = compiled(x, labels, seed=seed, keys=keys, num_classes=num_classes,
                           out_dtype=None if deferred else out_dtype, lengths=lengths)
            normalize = None if deferred is None else (deferred.fill_for(out.x, "mean"), deferred.fill_for(out.x, "std"))
            yield Batch(out.x, out.labels, out.label_smoothing, normalize=normalize, out_dtype=out_dtype,
                        lengths=out.lengths)
