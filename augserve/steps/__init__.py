"""All pipeline steps by op name."""

from augserve.steps.audio import AUDIO_STEPS
from augserve.steps.base import Step
from augserve.steps.image import IMAGE_STEPS, Normalize
from augserve.steps.mixing import MIX_STEPS, MODALITIES, LabelSmoothing
from augserve.steps.timeseries import SERIES_STEPS

STEPS: dict[str, type[Step]] = {cls.op: cls for cls in (*IMAGE_STEPS, *AUDIO_STEPS, *SERIES_STEPS, *MIX_STEPS)}

__all__ = ["MODALITIES", "STEPS", "LabelSmoothing", "Normalize", "Step"]
