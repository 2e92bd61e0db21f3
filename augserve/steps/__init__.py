"""All pipeline steps by op name."""

from augserve.steps.base import Step
from augserve.steps.image import IMAGE_STEPS, Normalize
from augserve.steps.mixing import MIX_STEPS, MODALITIES, LabelSmoothing

STEPS: dict[str, type[Step]] = {cls.op: cls for cls in (*IMAGE_STEPS, *MIX_STEPS)}

__all__ = ["MODALITIES", "STEPS", "LabelSmoothing", "Normalize", "Step"]
