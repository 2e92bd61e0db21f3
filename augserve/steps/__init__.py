"""All pipeline steps by op name: each module registers its steps as it is imported."""

from augserve.steps import (  # noqa: F401 - imported to register their steps
    audio, image, mixing, policies, tabular, text, timeseries, waveform)
from augserve.steps.base import STEPS, Step
from augserve.steps.image import Normalize
from augserve.steps.mixing import LabelSmoothing

__all__ = ["STEPS", "LabelSmoothing", "Normalize", "Step"]
