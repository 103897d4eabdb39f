"""finetunekit: short, correct-by-default fine-tuning of pretrained Keras models."""

from finetunekit.version import __version__  # noqa: I001
from finetunekit import heads, layers
from finetunekit.backbones import APPLICATIONS, get_application
from finetunekit.fine_tuner import FineTuner
from finetunekit.heads import ClassificationHead, RegressionHead
from finetunekit.saving import load

__all__ = [
    "APPLICATIONS",
    "ClassificationHead",
    "FineTuner",
    "RegressionHead",
    "__version__",
    "get_application",
    "heads",
    "layers",
    "load",
]
