"""The few private Keras, keras-hub and TensorFlow internals finetunekit relies on, in one place.

Everything else in finetunekit uses public API. Each function here names the
private attribute or module it reads and why no public one serves; the
tables below list every such name, `check_private_api` looks each one up in
the installed Keras, keras-hub and TensorFlow, and `tests/test_keras_compat.py`
fails loudly when an upgrade renames or removes one. That test also scans the
rest of the package for private access outside this module.

keras-hub is imported inside the functions that need it, never at import time.
"""

import importlib
import inspect

import keras
import numpy as np

#: Sub-layers of a keras-hub `TransformerEncoder` that a `TransformerDecoder` has under the same name.
TRANSFORMER_SHARED_SUBLAYERS = (
    "_self_attention_layer", "_self_attention_layer_norm", "_feedforward_intermediate_dense",
    "_feedforward_output_dense", "_feedforward_layer_norm",
)
#: The cross-attention sub-layers of a keras-hub `TransformerDecoder` (built with an encoder sequence).
TRANSFORMER_CROSS_ATTENTION_SUBLAYERS = ("_cross_attention_layer", "_cross_attention_layer_norm")

#: Sub-layers of a keras-hub `LlamaTransformerDecoder`, by role (GGUF weights are loaded into them).
LLAMA_DECODER_SUBLAYERS = {
    "attention": "_self_attention_layer",
    "attention_norm": "_self_attention_layernorm",
    "ffn_norm": "_feedforward_layernorm",
    "ffn_gate": "_feedforward_gate_dense",
    "ffn_up": "_feedforward_intermediate_dense",
    "ffn_down": "_feedforward_output_dense",
}
#: Projections of a keras-hub `LlamaAttention`, by role.
LLAMA_ATTENTION_SUBLAYERS = {
    "query": "_query_dense", "key": "_key_dense", "value": "_value_dense", "output": "_output_dense",
}

#: Every private attribute read below, by owner. `check_private_api` looks each
#: name up on what `_OWNERS[owner]()` gives: the class, or a small built
#: instance where Keras sets the attribute in `__init__` or `build`.
PRIVATE_ATTRIBUTES = {
    "keras.Model": ("_maybe_symbolic_build",),
    "keras.layers.Layer": ("_flatten_layers",),
    "keras.Model instance": ("_initial_epoch", "_inputs_struct"),
    "keras.Model instance (TensorFlow backend)": ("_distribute_strategy",),
    "keras.optimizers.Optimizer instance": ("_var_key", "_trainable_variables_indices"),
    "keras.optimizers.Adam (built)": ("_momentums", "_velocities"),
    "tf.distribute.StrategyExtended": ("_in_multi_worker_mode",),
    "keras_hub.layers.TransformerEncoder (built)": TRANSFORMER_SHARED_SUBLAYERS,
    "keras_hub.layers.TransformerDecoder (built with cross-attention)": (
        TRANSFORMER_SHARED_SUBLAYERS + TRANSFORMER_CROSS_ATTENTION_SUBLAYERS
    ),
    "keras_hub.models.MoonshineBackbone instance": ("_compute_mask_layer",),
    "keras_hub.models.LlamaBackbone decoder layer": tuple(LLAMA_DECODER_SUBLAYERS.values()),
    "keras_hub.models.LlamaBackbone decoder self-attention": tuple(
        LLAMA_ATTENTION_SUBLAYERS.values()
    ),
    "keras_hub.tokenizers.BytePairTokenizer": (
        "_set_vocabulary_and_merges_tokenizers", "_maybe_initialized_tf",
    ),
    "MoonshineBackbone decoder cross-attention (a keras.layers.MultiHeadAttention)": (
        "_key_dense", "_value_dense",
    ),
}
#: Every private module imported below, with the (dotted) names used from it.
PRIVATE_MODULES = {
    "keras_hub.src.models.retinanet.feature_pyramid": ("FeaturePyramid",),
    "keras_hub.src.models.retinanet.prediction_head": ("PredictionHead",),
    "keras_hub.src.models.retinanet.retinanet_label_encoder": ("RetinaNetLabelEncoder",),
    "keras_hub.src.layers.modeling.non_max_supression": ("non_max_suppression",),
    "keras_hub.src.utils.preset_utils": (
        "get_preset_loader", "PresetLoader.check_backbone_class", "PresetLoader.load_tokenizer",
    ),
    "keras_hub.src.utils.keras_utils": ("gelu_approximate",),
    "keras_hub.src.models.moonshine.moonshine_backbone": ("Arange", "compute_output_lengths"),
}
#: Private keyword arguments, with the Keras methods whose source must still name them.
PRIVATE_KEYWORDS = {"_use_cached_eval_dataset": ("fit", "evaluate")}


# ------------------------------------------------------------------ Keras
def optimizer_variable_key(optimizer, variable):
    """The key a Keras optimizer files `variable` under (`optimizer._var_key`).

    Backends hand `update_step` their own variable objects, which carry no
    Keras `path`; the optimizer's own key is the only stable way to match them.
    """
    return optimizer._var_key(variable)


def optimizer_tracks(optimizer, variables):
    """True when a built optimizer holds slots for every variable in `variables`.

    Reads `optimizer._trainable_variables_indices` (no public equivalent).
    """
    if not optimizer.built:
        return False
    known = getattr(optimizer, "_trainable_variables_indices", {})
    return all(optimizer._var_key(v) in known for v in variables)


def adam_slots(optimizer, variable):
    """`(momentum, velocity)` of `variable` in a built Keras Adam/AdamW, as backend variables.

    Reads `optimizer._momentums` and `_velocities` (Keras keeps them private).
    """
    index = optimizer._trainable_variables_indices[optimizer._var_key(variable)]
    return optimizer._momentums[index].value, optimizer._velocities[index].value


def _built_adam():
    optimizer = keras.optimizers.Adam()
    optimizer.build([keras.Variable(np.zeros((1,), "float32"))])
    return optimizer


def distribute_strategy(model):
    """The `tf.distribute` strategy a Keras model was built under, or None.

    Keras stores it as `model._distribute_strategy` (TensorFlow backend only).
    """
    return getattr(model, "_distribute_strategy", None)


def in_multi_worker_mode(strategy):
    """True when a `tf.distribute` strategy spans several workers (`strategy.extended._in_multi_worker_mode()`).

    TensorFlow exposes no public test: a `MultiWorkerMirroredStrategy` on one
    worker is a local strategy, and only its extended object knows.
    """
    in_multi_worker = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return bool(in_multi_worker and in_multi_worker())


def resumed_epoch(model):
    """The epoch `keras.callbacks.BackupAndRestore` resumed from (`model._initial_epoch`), or None."""
    return getattr(model, "_initial_epoch", None)


def forget_resumed_epoch(model):
    """Clears the epoch `BackupAndRestore` set, so that a later `fit` starts at its own epoch."""
    model._initial_epoch = None


def is_validation_inside_fit(evaluate_kwargs):
    """True when `keras.Model.fit` calls `evaluate` for its validation data.

    Keras passes the private `_use_cached_eval_dataset=True` then; the data
    is already prepared and must pass through untouched.
    """
    return bool(evaluate_kwargs.get("_use_cached_eval_dataset"))


def sublayers(layer, include_self=False):
    """Every layer nested in `layer`, depth first (`layer._flatten_layers`); `layer` first with `include_self`.

    `keras.Model.layers` lists only direct children; layers nested inside
    custom layers (a BatchNorm inside a keras-hub block) need the private walk.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


def input_structure(model):
    """The nested inputs (a dict, list or tensor) a functional Keras model was defined on.

    `model.inputs` is flat; Keras keeps the structure only as
    `model._inputs_struct` (which `keras.export` reads as well).
    """
    return model._inputs_struct


def key_value_projections(attention):
    """The key and value `EinsumDense` layers of a built `keras.layers.MultiHeadAttention`.

    Reads `attention._key_dense` and `attention._value_dense`: precomputing
    a cross-attention cache (as keras-hub's own `_build_cache` does) needs
    the projections alone, which the layer does not expose.
    """
    return attention._key_dense, attention._value_dense


def first_replica_batch(strategy, batch):
    """Replaces each distributed value in `batch` by its first local replica's value.

    Public TensorFlow API; it lives here beside its one user,
    `SymbolicBuildFromOneReplica` (`finetunekit.core.distribution` re-exports it).
    Keras builds a model's optimizer and metrics from one sample batch. For a
    distributed batch it averages the replicas with `strategy.reduce`, which
    `MultiWorkerMirroredStrategy` cannot do for nested (x, y) batches
    (keras-team/keras#20585). Shapes and dtypes are all the build needs, and
    one replica's batch has them.
    """
    import tensorflow as tf

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(local, batch, expand_composites=False)


class SymbolicBuildFromOneReplica:
    """Mixin: builds optimizer and metrics from one replica's batch under multi-worker training.

    Keras averages one distributed sample batch over replicas in the private
    `Model._maybe_symbolic_build`, which fails under
    `MultiWorkerMirroredStrategy` (keras-team/keras#20585); one replica's batch
    has the shapes and dtypes the build needs.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = distribute_strategy(self)
        if strategy is not None and iterator is not None:
            for _, _, batches in iterator:
                data_batch = first_replica_batch(strategy, next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


# ------------------------------------------------------------------ keras-hub
def transformer_shared_sublayers(encoder, decoder):
    """`(encoder sub-layer, decoder sub-layer)` pairs of the same role in keras-hub transformer layers.

    A `TransformerEncoder` and a `TransformerDecoder` keep their
    self-attention, feed-forward and norm layers as private attributes of the
    same names (`TRANSFORMER_SHARED_SUBLAYERS`); neither exposes them.
    """
    return [(getattr(encoder, name), getattr(decoder, name)) for name in TRANSFORMER_SHARED_SUBLAYERS]


def transformer_cross_attention_sublayers(decoder):
    """A keras-hub `TransformerDecoder`'s cross-attention and its layer norm.

    Reads `decoder._cross_attention_layer` and `_cross_attention_layer_norm`
    (no public accessor).
    """
    return [getattr(decoder, name) for name in TRANSFORMER_CROSS_ATTENTION_SUBLAYERS]


def llama_decoder_sublayers(layer):
    """`{role: sub-layer}` of a keras-hub `LlamaTransformerDecoder` and its self-attention.

    The roles are the keys of `LLAMA_DECODER_SUBLAYERS` and
    `LLAMA_ATTENTION_SUBLAYERS`; keras-hub keeps these layers as private
    attributes and exposes none of them.
    """
    parts = {role: getattr(layer, name) for role, name in LLAMA_DECODER_SUBLAYERS.items()}
    attention = parts["attention"]
    parts.update({role: getattr(attention, name) for role, name in LLAMA_ATTENTION_SUBLAYERS.items()})
    return parts


def llama_self_attention(layer):
    """The rotary self-attention of a keras-hub Llama decoder layer, or None for other layers."""
    return getattr(layer, LLAMA_DECODER_SUBLAYERS["attention"], None)


def byte_pair_tokenizer_with_hook(base):
    """A subclass of keras-hub `BytePairTokenizer` class `base` that calls `self.on_vocabulary()`.

    keras-hub builds its `tokenizers` pipeline in the private
    `_set_vocabulary_and_merges_tokenizers` whenever a vocabulary is set
    (at construction and when a saved model's assets load); the hook runs
    right after, so a subclass can replace the pipeline's word splitting.
    """

    class _VocabularyHook(base):
        def _set_vocabulary_and_merges_tokenizers(self, vocabulary, merges):
            super()._set_vocabulary_and_merges_tokenizers(vocabulary, merges)
            self.on_vocabulary()

        def on_vocabulary(self):
            """Called after keras-hub built the `tokenizers` pipeline of a new vocabulary."""

    return _VocabularyHook


def build_tokenizer_graph_tables(tokenizer):
    """Builds a keras-hub `BytePairTokenizer`'s TensorFlow lookup tables now (`_maybe_initialized_tf`).

    keras-hub builds them lazily on the first in-graph call; a SavedModel
    export must create them outside the traced serving function.
    """
    build = getattr(tokenizer, "_maybe_initialized_tf", None)
    if build is not None:
        build()


def retinanet_feature_pyramid_class():
    """keras-hub's RetinaNet `FeaturePyramid` layer (`keras_hub.src.models.retinanet.feature_pyramid`; not exported)."""
    from keras_hub.src.models.retinanet.feature_pyramid import FeaturePyramid

    return FeaturePyramid


def retinanet_prediction_head_class():
    """keras-hub's RetinaNet `PredictionHead` layer (`keras_hub.src.models.retinanet.prediction_head`; not exported)."""
    from keras_hub.src.models.retinanet.prediction_head import PredictionHead

    return PredictionHead


def retinanet_label_encoder_class():
    """keras-hub's `RetinaNetLabelEncoder` (`keras_hub.src.models.retinanet.retinanet_label_encoder`; not exported)."""
    from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder

    return RetinaNetLabelEncoder


def non_max_suppression(*args, **kwargs):
    """keras-hub's `non_max_suppression` function (`keras_hub.src.layers.modeling.non_max_supression`).

    keras-hub exports only the `NonMaxSuppression` layer, which takes
    encoded predictions; the function works on decoded boxes and scores.
    """
    from keras_hub.src.layers.modeling.non_max_supression import non_max_suppression as nms

    return nms(*args, **kwargs)


def preset_backbone_class(preset):
    """The keras-hub backbone class a preset handle or folder declares, without loading weights.

    Uses `keras_hub.src.utils.preset_utils.get_preset_loader(preset).check_backbone_class()`:
    keras-hub's public `from_preset` methods load the whole model.
    """
    from keras_hub.src.utils.preset_utils import get_preset_loader

    return get_preset_loader(preset).check_backbone_class()


def load_preset_tokenizer(preset, tokenizer_class):
    """`tokenizer_class` loaded from a preset's tokenizer files (`get_preset_loader(preset).load_tokenizer`).

    `Tokenizer.from_preset` first checks the preset's backbone class against
    the tokenizer's; keras-hub's preset loader reads the files directly.
    """
    from keras_hub.src.utils.preset_utils import get_preset_loader

    return get_preset_loader(preset).load_tokenizer(tokenizer_class)


def gelu_approximate():
    """keras-hub's registered tanh-approximate GELU (`keras_hub.src.utils.keras_utils.gelu_approximate`).

    The same function object BERT's layers use, so that configs serialize it
    under keras-hub's registered name; keras-hub does not export it.
    """
    from keras_hub.src.utils.keras_utils import gelu_approximate as activation

    return activation


def moonshine_positions(name):
    """keras-hub's Moonshine `Arange` layer (positions for rotary embeddings) named `name`.

    `keras_hub.src.models.moonshine.moonshine_backbone.Arange` is not exported.
    """
    from keras_hub.src.models.moonshine.moonshine_backbone import Arange

    return Arange(name=name)


def moonshine_output_lengths(sample_lengths):
    """Frames Moonshine's convolution stem makes of waveforms of `sample_lengths` samples.

    `keras_hub.src.models.moonshine.moonshine_backbone.compute_output_lengths`
    is not exported.
    """
    from keras_hub.src.models.moonshine.moonshine_backbone import compute_output_lengths

    return compute_output_lengths(sample_lengths)


def moonshine_frame_mask(model, frames, lengths):
    """A `MoonshineBackbone`'s own attention mask over `frames` for sequences of `lengths` frames.

    Calls `model._compute_mask_layer`, the `ComputeAttentionMask` layer the
    backbone's own `call` uses (keras-hub does not export the layer).
    """
    return model._compute_mask_layer(frames, lengths)


# ------------------------------------------------------------------ the check
def _functional_model():
    inputs = keras.Input((1,), name="x")
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def _tensorflow_model():
    return _functional_model() if keras.backend.backend() == "tensorflow" else None


def _transformer_encoder():
    import keras_hub

    layer = keras_hub.layers.TransformerEncoder(intermediate_dim=4, num_heads=1)
    layer.build((None, 2, 4))
    return layer


def _transformer_decoder():
    import keras_hub

    layer = keras_hub.layers.TransformerDecoder(intermediate_dim=4, num_heads=1)
    layer.build(decoder_sequence_shape=(None, 2, 4), encoder_sequence_shape=(None, 2, 4))
    return layer


def _moonshine_backbone():
    import keras_hub

    return keras_hub.models.MoonshineBackbone(
        vocabulary_size=8, filter_dim=8, encoder_num_layers=1, decoder_num_layers=1,
        hidden_dim=8, intermediate_dim=8, encoder_num_heads=1, decoder_num_heads=1,
        max_position_embeddings=8,
    )


def _llama_decoder():
    import keras_hub

    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=8, num_layers=1, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=8, intermediate_dim=8,
    )
    return backbone.transformer_layers[0]


#: What each owner in `PRIVATE_ATTRIBUTES` is looked up on (None: not on this backend).
_OWNERS = {
    "keras.Model": lambda: keras.Model,
    "keras.layers.Layer": lambda: keras.layers.Layer,
    "keras.Model instance": _functional_model,
    "keras.Model instance (TensorFlow backend)": _tensorflow_model,
    "keras.optimizers.Optimizer instance": lambda: keras.optimizers.Adam(),
    "keras.optimizers.Adam (built)": _built_adam,
    "tf.distribute.StrategyExtended": lambda: (
        importlib.import_module("tensorflow").distribute.StrategyExtended
    ),
    "keras_hub.layers.TransformerEncoder (built)": _transformer_encoder,
    "keras_hub.layers.TransformerDecoder (built with cross-attention)": _transformer_decoder,
    "keras_hub.models.MoonshineBackbone instance": _moonshine_backbone,
    "MoonshineBackbone decoder cross-attention (a keras.layers.MultiHeadAttention)": (
        lambda: _moonshine_backbone().decoder_blocks[0].cross_attention
    ),
    "keras_hub.models.LlamaBackbone decoder layer": _llama_decoder,
    "keras_hub.models.LlamaBackbone decoder self-attention": (
        lambda: llama_self_attention(_llama_decoder())
    ),
    "keras_hub.tokenizers.BytePairTokenizer": (
        lambda: importlib.import_module("keras_hub").tokenizers.BytePairTokenizer
    ),
}


def _missing_attributes():
    missing = []
    for owner, names in PRIVATE_ATTRIBUTES.items():
        try:
            found = _OWNERS[owner]()
        except Exception as error:  # the owner itself is gone or changed
            missing.append(f"{owner} ({type(error).__name__}: {error})")
            continue
        if found is not None:
            missing += [f"{owner}.{name}" for name in names if not hasattr(found, name)]
    return missing


def _missing_module_names():
    missing = []
    for module_name, names in PRIVATE_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(f"module {module_name}")
            continue
        for name in names:
            found = module
            for part in name.split("."):
                found = getattr(found, part, None)
            if found is None:
                missing.append(f"{module_name}.{name}")
    return missing


def _missing_keywords():
    return [
        f"keras.Model.{method} keyword {keyword}"
        for keyword, methods in PRIVATE_KEYWORDS.items()
        for method in methods
        if keyword not in inspect.getsource(getattr(keras.Model, method))
    ]


def check_private_api():
    """Raises `RuntimeError` naming every entry of the `PRIVATE_*` tables the installed versions lack.

    Returns:
        `(keras version, keras_hub version)` checked.
    """
    import keras_hub

    missing = _missing_attributes() + _missing_module_names() + _missing_keywords()
    if missing:
        raise RuntimeError(
            f"Keras {keras.__version__} / keras-hub {keras_hub.__version__} lacks private API "
            f"finetunekit uses: {', '.join(missing)}. Update finetunekit/core/_keras_compat.py."
        )
    return keras.__version__, keras_hub.__version__
