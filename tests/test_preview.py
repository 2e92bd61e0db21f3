"""`augserve preview`'s grid: keys chosen so every step shows, read back from the pipeline's own params, and
the axes and captions of spectrogram, series and waveform grids."""

import matplotlib.pyplot as plt
import pytest
import torch

from augserve import Pipeline
from augserve.photos import load_images
from augserve.tools.preview import build_preview, synthetic_clips


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


@pytest.mark.parametrize("pipeline, converts", [("sound-classify", False), ("speech-perturb", True)])
def test_waveform_grids_draw_each_sample_as_waveform_and_log_mel_before_and_after(pipeline, converts):
    figure, preview = build_preview(pipeline, versions=2)
    titles = [(ax.get_title(), ax) for ax in figure.axes if ax.get_title()]
    plt.close(figure)
    assert ("time (s)", "amplitude") in preview.axis_labels and ("time (frames)", "mel bin") in preview.axis_labels
    assert ("", "amplitude") in preview.axis_labels and ("", "mel bin") in preview.axis_labels
    waves = [ax for title, ax in titles if title.startswith("key ")]
    spectra = [ax for title, ax in titles if title.startswith("log_mel")]
    assert len(waves) == len(preview.keys) and len(spectra) == len(preview.keys) + 3  # + the originals
    assert preview.summary.startswith("every step appears at least once:") and not preview.missing

    # the waveform drawn is that of the steps before the converter, at their own positions: the same draws
    samples, lengths, _ = synthetic_clips()
    pipe = Pipeline.from_spec(pipeline)
    at = next((slot for slot, step in enumerate(pipe.steps) if step.produces), len(pipe.steps))
    out = Pipeline(pipe.steps[:at], pipe.modality)(samples.repeat_interleave(2, 0), seed=0, keys=preview.keys,
                                                   lengths=lengths.repeat_interleave(2))
    words = {"gain": "gain", "time_shift": "shift", "noise": "noise", "pitch_shift": "pitch",
             "time_stretch": "time stretch", "speed": "speed", "reverb": "reverb"}
    for i, key in enumerate(preview.keys.tolist()):
        ax = next(ax for ax in waves if ax.get_title().startswith(f"key {key}:"))
        assert torch.equal(torch.from_numpy(ax.lines[0].get_ydata()), out.x[i])
        for step in out.params:
            assert (words[step["op"]] in ax.get_title().replace("\n", " ")) == bool(step["applied"][i])
    spectrum_titles = " ".join(ax.get_title() for ax in spectra).replace("\n", " ")
    assert ("mask" in spectrum_titles) == converts and ("not a pipeline step" in spectrum_titles) != converts
