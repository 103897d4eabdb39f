"""finetunekit: short, correct-by-default fine-tuning of pretrained Keras models."""

from finetunekit.version import __version__  # noqa: I001
from finetunekit import heads, layers, optimizers
from finetunekit import callbacks, data, distribution
from finetunekit import caching, losses, lr_finder, schedules
from finetunekit.schedules import GradualUnfreezing
from finetunekit.backbones import APPLICATIONS, get_application
from finetunekit.callbacks import AtomicModelCheckpoint, DivergenceGuard, TrainingDivergedError
from finetunekit.fine_tuner import FineTuner
from finetunekit.heads import ClassificationHead, RegressionHead, TokenClassificationHead
from finetunekit.reports import Report, plot_history, report
from finetunekit.saving import load

__all__ = [
    "APPLICATIONS",
    "AtomicModelCheckpoint",
    "DivergenceGuard",
    "Report",
    "TrainingDivergedError",
    "callbacks",
    "data",
    "distribution",
    "caching",
    "losses",
    "lr_finder",
    "schedules",
    "GradualUnfreezing",
    "plot_history",
    "report",
    "ClassificationHead",
    "FineTuner",
    "RegressionHead",
    "TokenClassificationHead",
    "__version__",
    "get_application",
    "heads",
    "layers",
    "optimizers",
    "load",
]
