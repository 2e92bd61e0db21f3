"""`augserve preview`'s grid: keys chosen so every step shows, read back from the pipeline's own params, and
the axes and captions of spectrogram and series grids."""

import matplotlib.pyplot as plt
import pytest

from augserve import Pipeline
from augserve.photos import load_images
from augserve.tools.preview import build_preview


def test_the_chosen_keys_apply_every_step_and_every_randaugment_op():
    figure, preview = build_preview("imagenet-randaug", versions=5, size=96, seed=0)
    plt.close(figure)
    samples, _ = load_images(None, 96)
    pipe = Pipeline.from_spec("imagenet-randaug")
    shown = Pipeline(pipe.steps[:-1], pipe.modality)  # the grid leaves out the final normalize
    params = {step["op"]: step for step in shown(samples.repeat_interleave(5, 0), seed=0, keys=preview.keys).params}
    assert params["hflip"]["applied"].any() and not params["hflip"]["applied"].all()
    assert params["random_erasing"]["applied"].any()  # keys 0..19 at seed 0 erase nothing
    space = params["rand_augment"]["space"]
    drawn = {space[k] for k in params["rand_augment"]["ops"].flatten().tolist()}
    assert drawn >= set(space) - {"identity"}
    assert preview.summary.startswith("every step appears at least once:") and not preview.missing
    assert len(set(preview.keys.tolist())) == 20 and all(preview.captions)


@pytest.mark.parametrize("pipeline, x_label, y_label", [
    ("specaugment-LD", "time (frames)", "frequency bin"),
    ('[{"op": "log_mel"}, {"op": "time_mask", "T": 70}]', "time (frames)", "mel bin"),
    ("timeseries-um", "sample index (time step)", "value"),
])
def test_spectrogram_and_series_grids_have_axes_and_captions(pipeline, x_label, y_label):
    figure, preview = build_preview(pipeline, versions=2)
    tiles = [ax for ax in figure.axes if ax.get_title()]
    plt.close(figure)
    assert (x_label, "") in preview.axis_labels and ("", y_label) in preview.axis_labels
    assert all(ax.axison and ax.get_xticks().size for ax in tiles)
    captions = [ax.get_title() for ax in tiles if ax.get_title().startswith("key ")]
    assert len(captions) == len(preview.keys) and all(caption.split(": ", 1)[1] for caption in captions)
    assert preview.summary.startswith("every step appears at least once:")


def test_a_step_no_key_draws_is_named_as_not_shown():
    figure, preview = build_preview([{"op": "hflip", "p": 1e-9}, {"op": "vflip"}], versions=1, size=32)
    plt.close(figure)
    assert preview.summary.startswith("not every step appears") and "hflip" in preview.missing
    assert "10,000" in preview.missing["hflip"] and preview.shown["vflip"] >= 1
