"""augserve: batched, replayable data augmentation on the GPU (or CPU), served over gRPC."""

from augserve.pipeline import AugmentOutput, Pipeline
from augserve.presets import PRESETS
from augserve.spec import SpecError

__version__ = "0.1.0"
__all__ = ["AugmentOutput", "Pipeline", "PRESETS", "SpecError", "__version__"]
