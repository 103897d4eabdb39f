"""Feature caching: train the head of a frozen backbone on features computed once.

With the backbone frozen and no augmentation, every epoch of `fit` recomputes
the same backbone features. `FineTuner.fit(cache_features="auto")` instead runs
the input graph (formatter, normalisation, backbone and the head's pooling) once
over the training and validation data, keeps the features in memory (numpy) or,
beyond `cache_memory_budget` bytes, in a `np.memmap` file in a temporary
folder, and trains a small Keras model of the head alone on them. That model
shares the head's layers and the FineTuner's optimizer, so the FineTuner's
weights and optimizer state are the trained ones; callbacks see the FineTuner.

With augmentation, `cache_augmented_copies=K` caches K augmented passes over
the training data; epoch `e` trains on copy `e % K`.

Boundary caching: with `unfreeze=N` the same holds for the frozen front of the
backbone. The backbone is cut where the frozen layers meet the trainable ones
(`finetunekit.training.boundary`); the front runs once and its activations
are stored as float16, and a model of the trainable back and the head trains
on them, sharing the FineTuner's layers and optimizer. `fine_tune`'s second
stage takes this path too. When `cache_features="auto"` finds no cache
possible, the reason is logged (logger `"finetunekit"`, level INFO).
"""

import keras
import numpy as np

from finetunekit.core._keras_compat import distribute_strategy
from finetunekit.core.data.pipeline import is_dataset
from finetunekit.core.distribution import strategy_scope
from finetunekit.training.feature_store import (
    DEFAULT_MEMORY_BUDGET,
    CachedFeatureDataset,
    FeatureCache,
    memory_dataset,
    unpack,
)

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "CachedFeatureDataset",
    "FeatureCache",
    "cache_blocker",
    "check_cache_options",
    "feature_function",
    "fit_on_cached_features",
]


def check_cache_options(cache_features, memory_budget, augmented_copies):
    """Validates the caching arguments of `fit`."""
    if not (cache_features is True or cache_features is False or cache_features == "auto"):
        raise ValueError(
            '`cache_features` must be "auto", True or False. '
            f"Received: cache_features={cache_features!r}"
        )
    if memory_budget is None or memory_budget < 0:
        raise ValueError(
            "`cache_memory_budget` must be a number of bytes >= 0. "
            f"Received: cache_memory_budget={memory_budget!r}"
        )
    if (
        isinstance(augmented_copies, bool)
        or not isinstance(augmented_copies, (int, np.integer))
        or augmented_copies < 0
    ):
        raise ValueError(
            "`cache_augmented_copies` must be an int >= 0. "
            f"Received: cache_augmented_copies={augmented_copies!r}"
        )


def _finite_dataset(ds):
    import tensorflow as tf

    return int(ds.cardinality()) not in (
        int(tf.data.INFINITE_CARDINALITY),
        int(tf.data.UNKNOWN_CARDINALITY),
    )


def cache_blocker(model, train, augmented_copies, callbacks=()):
    """Why features cannot be cached for this `fit`, or None when they can.

    Args:
        model: the FineTuner.
        train: the training `Batches`.
        augmented_copies: int. `cache_augmented_copies`.
        callbacks: the `fit` callbacks.
    """
    if any(getattr(c, "changes_trainable", False) for c in callbacks or ()):
        return "a callback changes which layers train (e.g. GradualUnfreezing)"
    reason = model.backbone_kind.cache_blocker()
    if reason is None and backbone_trains(model):
        reason = _boundary_blocker(model)
    elif reason is None and model.head.cache_input(model.backbone_outputs) is None:
        reason = f"{type(model.head).__name__} cannot train on cached features"
    if reason is not None:
        return reason
    if model.augmentation_layers and not model.head.augment_in_model:
        return f"{type(model.head).__name__} augments its targets in the data pipeline"
    if model.augmentation_layers and not augmented_copies:
        return "augmentation is active (pass cache_augmented_copies=K to cache K augmented passes)"
    if getattr(keras.distribution, "distribution", lambda: None)() is not None:
        return "a keras.distribution is set"
    if train.is_dataset:
        return None if _finite_dataset(train.x) else "the dataset is infinite or of unknown length"
    if train.y is None:
        return "no labels"
    return None


def backbone_trains(model):
    """True when some backbone weights train (`unfreeze != 0`)."""
    return model.unfreeze != 0 or bool(model.backbone.trainable_weights)


def _boundary_blocker(model):
    """Why the frozen front of a training backbone cannot be cached, or None."""
    extra = [n for n in model.head.needs if n != "features" and n in model.backbone_outputs]
    if extra:
        return f"{type(model.head).__name__} reads {', '.join(extra)} besides the features"
    split = model.backbone_kind.boundary_split()
    if isinstance(split, str):
        return f"the backbone trains (unfreeze={model.unfreeze!r}) and {split}"
    return None


def feature_function(model, training, front=None):
    """A `tf.function` mapping a batch of raw inputs to what the training model reads.

    That is `Head.cache_input` for a frozen backbone, or the float16 output of
    `front` (the frozen front of `backbone_kind.boundary_split()`) when the
    backbone trains.
    """
    import tensorflow as tf

    if front is not None:
        cached = keras.ops.cast(front(model.backbone_kind.backbone_input), "float16")
    else:
        cached = model.head.cache_input(model.backbone_outputs)
    extractor = keras.Model(model.inputs, cached, name="feature_extractor")
    traced = []

    def extract(inputs):
        # Traced once, for every batch size (and every text length): a retrace of
        # the whole backbone for the last, smaller batch cost seconds.
        if not traced:
            signature = _relaxed_signature(model.inputs, inputs)
            traced.append(tf.function(
                lambda x: extractor(x, training=training), input_signature=signature,
                reduce_retracing=signature is None,
            ))
        return traced[0](inputs)

    extract.tracing_count = lambda: traced[0].experimental_get_tracing_count() if traced else 0
    return extract


def _relaxed_signature(model_inputs, inputs):
    """`[spec]` for `inputs` with the batch axis (and the model's own free axes) left open.

    Returns None (let `tf.function` retrace) when `inputs` do not match the
    model's inputs by name.
    """
    import tensorflow as tf

    def spec(model_input, value):
        shape = [None] + [
            None if dim is None else int(dim) for dim in tuple(model_input.shape)[1:]
        ]
        if len(shape) != len(value.shape):
            raise ValueError
        return tf.TensorSpec(shape, tf.as_dtype(value.dtype))

    by_name = {getattr(i, "name", None): i for i in model_inputs}
    try:
        if isinstance(inputs, dict):
            return [{name: spec(by_name[name], value) for name, value in inputs.items()}]
        if len(model_inputs) == 1:
            return [spec(model_inputs[0], inputs)]
    except (KeyError, ValueError, TypeError):
        pass
    return None


class _HeadModel(keras.Model):
    """The head alone, on cached features; shares the head's variables."""

    def __init__(self, head, **kwargs):
        super().__init__(**kwargs)
        self.head = head

    def call(self, features, training=None):
        return self.head.call_cached(features, training=training)


class _BackModel(keras.Model):
    """The trainable back of the backbone and the head, on cached boundary activations."""

    def __init__(self, back, head, **kwargs):
        super().__init__(**kwargs)
        self.back = back
        self.head = head

    def call(self, boundary, training=None):
        boundary = keras.ops.cast(boundary, self.back.compute_dtype)
        return self.head({"features": self.back(boundary, training=training)}, training=training)


class _ForwardCallbacks(keras.callbacks.Callback):
    """Runs user callbacks against the FineTuner while the head model trains."""

    def __init__(self, callbacks, outer, **params):
        super().__init__()
        self.outer = outer
        self.inner = keras.callbacks.CallbackList(
            callbacks, add_history=False, add_progbar=False, model=outer, **params
        )

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def _forward(self, hook, *args, **kwargs):
        getattr(self.inner, hook)(*args, **kwargs)
        if self.outer.stop_training:
            self.model.stop_training = True

    def on_train_begin(self, logs=None):
        self.outer.stop_training = False
        self._forward("on_train_begin", logs)


for _hook in (
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
):

    def _make(hook):
        def method(self, *args, **kwargs):
            self._forward(hook, *args, **kwargs)

        method.__name__ = hook
        return method

    setattr(_ForwardCallbacks, _hook, _make(_hook))


def _fresh_metrics(metrics):
    if metrics is None:
        return None
    if isinstance(metrics, dict):
        return {k: _fresh_metrics(v) for k, v in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [_fresh_metrics(m) for m in metrics]
    if isinstance(metrics, keras.metrics.Metric):
        return metrics.__class__.from_config(metrics.get_config())
    return metrics


def fit_on_cached_features(
    model, train, validation_data, *, batch_size, epochs, shuffle,
    memory_budget=DEFAULT_MEMORY_BUDGET, augmented_copies=0, fit_kwargs=None,
):
    """Trains `model.head` on cached features. Returns a `keras.callbacks.History`.

    Args:
        model: a compiled FineTuner with a frozen backbone.
        train: the training `Batches` (arrays, or a finite dataset of
            `(inputs, labels[, weights])` batches).
        validation_data: None, `(x, y[, w])` arrays or a dataset.
        batch_size: int or None. Batch size for arrays (default 32); a dataset
            keeps the size of its first batch.
        epochs: int.
        shuffle: bool. Reshuffle the cached training features every epoch.
        memory_budget: int. Bytes of features kept in memory.
        augmented_copies: int. Augmented passes cached (needs augmentation).
        fit_kwargs: dict. Other `keras.Model.fit` arguments (`callbacks`,
            `verbose`, `initial_epoch`, `class_weight`, ...).
    """
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.pop("shuffle", None)
    callbacks = fit_kwargs.pop("callbacks", None) or []
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = list(callbacks.callbacks)
    batch_size = batch_size or 32
    if train.is_dataset:
        first = keras.tree.flatten(unpack(next(iter(train.x.take(1))))[0])[0]
        batch_size = int(keras.ops.shape(first)[0])
    cache = FeatureCache(model, memory_budget)
    # Cut once: (front, back) at the freezing boundary when the backbone trains.
    front, back = model.backbone_kind.boundary_split() if backbone_trains(model) else (None, None)
    try:
        copies = _extract_copies(model, cache, train, batch_size, augmented_copies, front)
        validation = _extract_validation(model, cache, validation_data, batch_size, front)
        steps = -(-len(copies[0][0]) // batch_size)
        head_model = _compiled_head_model(model, back, _steps_per_call(model, callbacks, steps))
        forward = _ForwardCallbacks(callbacks, model, epochs=epochs)
        common = dict(epochs=epochs, validation_data=validation, callbacks=[forward], **fit_kwargs)
        # Either way the data shuffles examples itself.
        if len(copies) == 1 and not cache.on_disk:
            data = memory_dataset(*copies[0], batch_size, shuffle=shuffle)
        else:
            data = CachedFeatureDataset(copies, batch_size, shuffle=shuffle)
        history = head_model.fit(data, shuffle=False, **common)
        history.set_model(model)
        history.feature_cache = {
            "examples": int(len(copies[0][0])),
            "copies": len(copies),
            "feature_shape": tuple(copies[0][0].shape[1:]),
            "bytes": cache.nbytes,
            "on_disk": cache.on_disk,
            "boundary": back is not None,
        }
        model.history = history
        return history
    finally:
        cache.close()


def _extract_copies(model, cache, train, batch_size, augmented_copies, front):
    """Features of the training data: one pass, or `augmented_copies` augmented passes."""
    wanted = max(1, int(augmented_copies)) if model.augmentation_layers else 1
    extract = feature_function(model, bool(model.augmentation_layers), front)
    inputs = train.x
    return [
        cache.extract(extract, inputs, train.y, train.sample_weight, batch_size, f"train_{k}")
        for k in range(wanted)
    ]


def _extract_validation(model, cache, validation_data, batch_size, front):
    if validation_data is None:
        return None
    extract = feature_function(model, False, front)
    if is_dataset(validation_data):
        val = cache.extract(extract, validation_data, None, None, batch_size, "val")
    else:
        vx, vy, vw = unpack(tuple(validation_data))
        val = cache.extract(extract, vx, vy, vw, batch_size, "val")
    if cache.on_disk:
        return CachedFeatureDataset([val], batch_size)
    return tuple(v for v in val if v is not None)


_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def _steps_per_call(model, callbacks, steps_per_epoch):
    """How many cached steps one call of the head model's train function runs.

    The head's steps on cached features are cheap, so the per-call cost of
    Keras and TensorFlow dominates; running a whole epoch (up to 64 steps) per
    call removes most of it and leaves every update the same. A callback with
    batch-level hooks keeps the compiled `steps_per_execution`, so that it is
    called after every step as in the uncached run (`DivergenceGuard` needs
    not: a NaN stays in the running loss it reads).
    """
    chosen = int(model.compile_arguments.get("steps_per_execution", 1) or 1)
    for callback in callbacks:
        if getattr(callback, "checks_running_loss", False):
            continue
        for hook in _BATCH_HOOKS:
            if getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook):
                return chosen
    return max(chosen, min(int(steps_per_epoch), 64))


def _compiled_head_model(model, back=None, steps_per_execution=None):
    """The head (after `back`, the trainable back of the backbone, if given), compiled like
    the FineTuner (same optimizer object, fresh metrics)."""
    args = dict(model.compile_arguments)
    # The head trains under the FineTuner's distribution strategy, if any.
    with strategy_scope(distribute_strategy(model)):
        if back is not None:
            head_model = _BackModel(back, model.head, name=f"{model.name}_back")
        else:
            head_model = _HeadModel(model.head, name=f"{model.name}_head")
        head_model.compile(
            optimizer=model.optimizer,
            loss=model.loss,
            loss_weights=args.get("loss_weights"),
            metrics=_fresh_metrics(args.get("metrics")),
            weighted_metrics=_fresh_metrics(args.get("weighted_metrics")),
            run_eagerly=args.get("run_eagerly", False),
            steps_per_execution=steps_per_execution or args.get("steps_per_execution", 1),
            jit_compile=args.get("jit_compile", "auto"),
        )
    return head_model
