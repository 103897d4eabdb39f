"""finetunekit: short, correct-by-default fine-tuning of pretrained Keras models.

`import finetunekit` is cheap: the public names below are resolved on first
use (PEP 562), so Keras and TensorFlow load when a Keras-backed name such as
`fk.FineTuner` is first touched, and keras-hub, TensorFlow Datasets and
TensorFlow Text only when a text backbone or a TFDS dataset needs them.
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING

from finetunekit.version import __version__

# Public name -> the module that defines it.
_EXPORTS = {
    "APPLICATIONS": "finetunekit.backbones",
    "get_application": "finetunekit.backbones",
    "AtomicModelCheckpoint": "finetunekit.callbacks",
    "DivergenceGuard": "finetunekit.callbacks",
    "TrainingDivergedError": "finetunekit.callbacks",
    "FineTuner": "finetunekit.fine_tuner",
    "ClassificationHead": "finetunekit.heads",
    "DetectionHead": "finetunekit.heads",
    "RegressionHead": "finetunekit.heads",
    "RankingHead": "finetunekit.heads",
    "RetrievalHead": "finetunekit.heads",
    "TokenClassificationHead": "finetunekit.heads",
    "SegmentationHead": "finetunekit.heads",
    "plot_masks": "finetunekit.segmentation_plots",
    "Report": "finetunekit.reports",
    "plot_history": "finetunekit.reports",
    "plot_boxes": "finetunekit.heads.detection_plots",
    "report": "finetunekit.reports",
    "load": "finetunekit.saving",
    "GradualUnfreezing": "finetunekit.schedules",
    "SpeechToTextHead": "finetunekit.heads",
    "Seq2SeqHead": "finetunekit.heads",
}
_SUBMODULES = (
    "backbones",
    "caching",
    "callbacks",
    "data",
    "distribution",
    "heads",
    "layers",
    "losses",
    "lr_finder",
    "optimizers",
    "rl",
    "schedules",
)

__all__ = [  # = _EXPORTS, _SUBMODULES and __version__ (tests/test_startup.py checks)
    "APPLICATIONS",
    "AtomicModelCheckpoint",
    "ClassificationHead",
    "DetectionHead",
    "DivergenceGuard",
    "FineTuner",
    "GradualUnfreezing",
    "RankingHead",
    "RegressionHead",
    "Report",
    "RetrievalHead",
    "SpeechToTextHead",
    "Seq2SeqHead",
    "TokenClassificationHead",
    "TrainingDivergedError",
    "SegmentationHead",
    "plot_masks",
    "__version__",
    "backbones",
    "caching",
    "callbacks",
    "data",
    "distribution",
    "get_application",
    "heads",
    "layers",
    "load",
    "losses",
    "lr_finder",
    "optimizers",
    "plot_boxes",
    "plot_history",
    "report",
    "rl",
    "schedules",
]

if TYPE_CHECKING:  # static analysis (IDEs, type checkers, mkdocstrings) sees the real objects
    from finetunekit import (
        backbones,
        caching,
        callbacks,
        data,
        distribution,
        heads,
        layers,
        losses,
        lr_finder,
        optimizers,
        rl,
        schedules,
    )
    from finetunekit.backbones import APPLICATIONS, get_application
    from finetunekit.callbacks import AtomicModelCheckpoint, DivergenceGuard, TrainingDivergedError
    from finetunekit.fine_tuner import FineTuner
    from finetunekit.heads import (
        ClassificationHead,
        DetectionHead,
        RankingHead,
        RegressionHead,
        RetrievalHead,
        SegmentationHead,
        Seq2SeqHead,
        SpeechToTextHead,
        TokenClassificationHead,
    )
    from finetunekit.heads.detection_plots import plot_boxes
    from finetunekit.reports import Report, plot_history, report
    from finetunekit.saving import load
    from finetunekit.schedules import GradualUnfreezing
    from finetunekit.segmentation_plots import plot_masks


# Modules that register Keras serializables: imported together on the first
# Keras-backed access, so that `fk.load` (and `keras.saving.load_model` after
# any `fk.X`) finds every finetunekit class, as with an eager import.
_KERAS_MODULES = (
    "finetunekit.fine_tuner",
    "finetunekit.heads",
    "finetunekit.layers",
    "finetunekit.losses",
    "finetunekit.optimizers",
    "finetunekit.schedules",
)
_KERAS_FREE = ("data",)  # plain-Python sub-packages: TensorFlow loads when they need it


def _register_keras_objects():
    for module in _KERAS_MODULES:
        importlib.import_module(module)


def __getattr__(name):
    """Imports a public name (or any sub-module) of finetunekit on first access."""
    if name in _EXPORTS or (name in _SUBMODULES and name not in _KERAS_FREE):
        _register_keras_objects()
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
