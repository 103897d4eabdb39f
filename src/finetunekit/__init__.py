"""finetunekit: short, correct-by-default fine-tuning of pretrained Keras models.

`import finetunekit` is cheap: the public names below are resolved on first
use (PEP 562), so Keras and TensorFlow load when a Keras-backed name such as
`fk.FineTuner` is first touched, and keras-hub, TensorFlow Datasets and
TensorFlow Text only when a text backbone or a TFDS dataset needs them.
TensorFlow loads without its C++ start-up notices on stderr
(`TF_CPP_MIN_LOG_LEVEL=0` shows them), and Keras' progress bar becomes one
line per epoch when standard output is a file (`finetunekit.core.console`).

TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with
AVX-512 VNNI/BF16 or AMX, yet on AVX2-only CPUs (most laptops, many cloud
machines) they train faster too: a MiniLM fine-tuning step 1.3x, ResNet50
1.9x on a 2-core AVX2 machine (`benchmarks/README.md`). So `import
finetunekit` sets `TF_ENABLE_ONEDNN_OPTS=1` unless it is set already;
TensorFlow reads it when it loads, so it applies when finetunekit is
imported before TensorFlow or Keras (`TF_ENABLE_ONEDNN_OPTS=0` turns it off).
"""

import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING

from finetunekit.version import __version__

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Public name -> the module that defines it.
_EXPORTS = {
    "APPLICATIONS": "finetunekit.backbones",
    "get_application": "finetunekit.backbones",
    "AtomicModelCheckpoint": "finetunekit.training.callbacks",
    "DivergenceGuard": "finetunekit.training.callbacks",
    "TrainingDivergedError": "finetunekit.training.callbacks",
    "FineTuner": "finetunekit.tuner.fine_tuner",
    "ClassificationHead": "finetunekit.heads",
    "DetectionHead": "finetunekit.heads",
    "RegressionHead": "finetunekit.heads",
    "RankingHead": "finetunekit.heads",
    "RetrievalHead": "finetunekit.heads",
    "TokenClassificationHead": "finetunekit.heads",
    "SegmentationHead": "finetunekit.heads",
    "plot_masks": "finetunekit.families.segmentation.plots",
    "Report": "finetunekit.core.reports",
    "plot_history": "finetunekit.core.reports",
    "plot_boxes": "finetunekit.families.detection.plots",
    "report": "finetunekit.core.reports",
    "load": "finetunekit.core.saving",
    "GradualUnfreezing": "finetunekit.training.schedules",
    "SpeechToTextHead": "finetunekit.heads",
    "Seq2SeqHead": "finetunekit.heads",
    "InstructionHead": "finetunekit.heads",
}
#: Public sub-modules, `fk.NAME`: where each one lives in the tree.
_SUBMODULES = {
    "backbones": "finetunekit.backbones",
    "caching": "finetunekit.training.caching",
    "callbacks": "finetunekit.training.callbacks",
    "data": "finetunekit.data",
    "distribution": "finetunekit.core.distribution",
    "heads": "finetunekit.heads",
    "layers": "finetunekit.layers",
    "losses": "finetunekit.training.losses",
    "lr_finder": "finetunekit.training.lr_finder",
    "optimizers": "finetunekit.training.optimizer",
    "rl": "finetunekit.families.vector.rl",
    "schedules": "finetunekit.training.schedules",
}

__all__ = [  # = _EXPORTS, _SUBMODULES and __version__ (tests/test_startup.py checks)
    "APPLICATIONS",
    "AtomicModelCheckpoint",
    "ClassificationHead",
    "DetectionHead",
    "InstructionHead",
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
    from finetunekit import backbones, data, heads, layers
    from finetunekit.core import distribution
    from finetunekit.core.reports import Report, plot_history, report
    from finetunekit.core.saving import load
    from finetunekit.families.causal_lm.head import InstructionHead
    from finetunekit.families.classification.classification import ClassificationHead
    from finetunekit.families.classification.regression import RegressionHead
    from finetunekit.families.detection.head import DetectionHead
    from finetunekit.families.detection.plots import plot_boxes
    from finetunekit.families.image.applications import APPLICATIONS, get_application
    from finetunekit.families.recommendation.ranking import RankingHead
    from finetunekit.families.recommendation.retrieval import RetrievalHead
    from finetunekit.families.segmentation.head import SegmentationHead
    from finetunekit.families.segmentation.plots import plot_masks
    from finetunekit.families.seq2seq.head import Seq2SeqHead
    from finetunekit.families.speech.head import SpeechToTextHead
    from finetunekit.families.text.ner import TokenClassificationHead
    from finetunekit.families.vector import rl
    from finetunekit.training import caching, callbacks, losses, lr_finder, schedules
    from finetunekit.training import optimizer as optimizers
    from finetunekit.training.callbacks import (
        AtomicModelCheckpoint,
        DivergenceGuard,
        TrainingDivergedError,
    )
    from finetunekit.training.schedules import GradualUnfreezing
    from finetunekit.tuner.fine_tuner import FineTuner


# Modules that register Keras serializables: imported together on the first
# Keras-backed access, so that `fk.load` (and `keras.saving.load_model` after
# any `fk.X`) finds every finetunekit class, as with an eager import.
_KERAS_MODULES = (
    "finetunekit.tuner.fine_tuner",
    "finetunekit.heads",
    "finetunekit.layers",
    "finetunekit.training.losses",
    "finetunekit.training.metrics",
    "finetunekit.training.optimizer",
    "finetunekit.training.schedules",
)
_KERAS_FREE = ("data",)  # plain-Python sub-packages: TensorFlow loads when they need it


def _register_keras_objects():
    if "tensorflow" not in sys.modules:  # TensorFlow's native start-up lines stay off stderr
        importlib.import_module("finetunekit.core.console").import_tensorflow_quietly()
    for module in _KERAS_MODULES:
        importlib.import_module(module)
    importlib.import_module("finetunekit.core.kind").load_families()


def _registered_heads():
    """Heads of every registered family (built-in and plugins), by class name."""
    _register_keras_objects()
    return importlib.import_module("finetunekit.core.family").head_classes()


def __getattr__(name):
    """Imports a public name (or any sub-module) of finetunekit on first access."""
    if name in _EXPORTS or (name in _SUBMODULES and name not in _KERAS_FREE):
        _register_keras_objects()
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    elif not name.startswith("_") and name in _registered_heads():
        return _registered_heads()[name]  # a plugin family's head: not cached, families may change
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
