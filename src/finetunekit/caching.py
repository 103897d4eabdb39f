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
"""

import math
import os
import shutil
import tempfile

import keras
import numpy as np

from finetunekit.distribution import strategy_scope
from finetunekit.heads.base import Head, pool_features

#: Default memory budget of a feature cache, in bytes (2 GiB).
DEFAULT_MEMORY_BUDGET = 2 * 1024**3


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


def cache_blocker(model, inputs, targets, augmented_copies, callbacks=()):
    """Why features cannot be cached for this `fit`, or None when they can."""
    from finetunekit.data.pipeline import is_dataset

    if any(getattr(c, "changes_trainable", False) for c in callbacks or ()):
        return "a callback changes which layers train (e.g. GradualUnfreezing)"

    if model.adapter.kind != "image":
        return "feature caching supports image backbones only"
    if model.unfreeze != 0 or model.backbone.trainable_weights:
        return "the backbone trains (unfreeze != 0)"
    if model.augmentation_layers and not augmented_copies:
        return "augmentation is active (pass cache_augmented_copies=K to cache K augmented passes)"
    if getattr(keras.distribution, "distribution", lambda: None)() is not None:
        return "a keras.distribution is set"
    if is_dataset(inputs):
        if targets is not None:
            return "a dataset with separate targets"
        if not _finite_dataset(inputs):
            return "the dataset is infinite or of unknown length"
        return None
    if targets is None:
        return "no labels"
    if not isinstance(inputs, np.ndarray):
        return "the inputs are not an array or a dataset"
    return None


def _unpack(batch):
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        return batch[0], batch[1], batch[2]
    return batch, None, None


def _head_input(model):
    """The symbolic tensor the head is called on in the FineTuner's graph."""
    node = model.head._inbound_nodes[0]
    return node.input_tensors[0]


class _Pool(keras.layers.Layer):
    def __init__(self, pooling, **kwargs):
        super().__init__(**kwargs)
        self.pooling = pooling

    def call(self, features):
        return pool_features(features, self.pooling)


def _head_pools_first(head):
    """True when the head is a plain `Head`: pool, then dense layers (so pooled features suffice)."""
    return (
        isinstance(head, Head)
        and type(head).call is Head.call
        and type(head).pool is Head.pool
        and head.pooling != "none"
    )


def feature_function(model, training):
    """A `tf.function` mapping a batch of raw images to what the head needs."""
    import tensorflow as tf

    features = _head_input(model)
    if _head_pools_first(model.head):
        features = _Pool(model.head.pooling, name="cached_pooling")(features)
    extractor = keras.Model(model.inputs, features, name="feature_extractor")

    @tf.function(reduce_retracing=True)
    def extract(images):
        return extractor(images, training=training)

    return extract


class _Store:
    """Appends feature batches in memory, spilling to a `.npy`-like raw file past a budget."""

    def __init__(self, budget, workdir_factory, name):
        self.budget = budget
        self.workdir_factory = workdir_factory
        self.name = name
        self.chunks = []
        self.in_memory = 0
        self.file = None
        self.path = None
        self.count = 0
        self.shape = None
        self.dtype = None

    def append(self, chunk):
        chunk = np.ascontiguousarray(chunk)
        if self.shape is None:
            self.shape, self.dtype = chunk.shape[1:], chunk.dtype
        self.count += len(chunk)
        if self.file is None and self.in_memory + chunk.nbytes > self.budget:
            self.path = os.path.join(self.workdir_factory(), f"{self.name}.bin")
            self.file = open(self.path, "wb")  # noqa: SIM115 -- closed in finish()
            for old in self.chunks:
                old.tofile(self.file)
            self.chunks, self.in_memory = [], 0
        if self.file is not None:
            chunk.tofile(self.file)
        else:
            self.chunks.append(chunk)
            self.in_memory += chunk.nbytes

    def finish(self):
        if self.file is not None:
            self.file.close()
            return np.memmap(
                self.path, dtype=self.dtype, mode="r", shape=(self.count,) + tuple(self.shape)
            )
        return np.concatenate(self.chunks) if self.chunks else np.zeros((0,))


def _batches(inputs, targets, sample_weight, batch_size):
    from finetunekit.data.pipeline import is_dataset

    if is_dataset(inputs):
        yield from inputs
        return
    for start in range(0, len(inputs), batch_size):
        stop = start + batch_size
        yield (
            inputs[start:stop],
            targets[start:stop],
            None if sample_weight is None else sample_weight[start:stop],
        )


def _concat(parts):
    parts = [p for p in parts if p is not None]
    return np.concatenate(parts) if parts else None


class FeatureCache:
    """Computes and holds cached features of one `fit` call.

    Args:
        model: the FineTuner.
        memory_budget: int. Bytes of features kept in memory; beyond, features
            go to `np.memmap` files in a temporary folder.
    """

    def __init__(self, model, memory_budget=DEFAULT_MEMORY_BUDGET):
        self.model = model
        self.budget_left = int(memory_budget)
        self.workdir = None
        self.on_disk = False
        self.nbytes = 0

    def _workdir(self):
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="finetunekit_features_")
        return self.workdir

    def extract(self, extract, inputs, targets, sample_weight, batch_size, name):
        """Runs `extract` over the data. Returns `(features, targets, sample_weight)`."""
        store = _Store(self.budget_left, self._workdir, name)
        ys, ws = [], []
        for batch in _batches(inputs, targets, sample_weight, batch_size):
            x, y, w = _unpack(batch)
            if y is None:
                raise ValueError("Feature caching needs labelled data: (images, labels) batches.")
            store.append(keras.ops.convert_to_numpy(extract(x)))
            ys.append(keras.ops.convert_to_numpy(y))
            ws.append(None if w is None else keras.ops.convert_to_numpy(w))
        features = store.finish()
        self.budget_left = max(0, self.budget_left - store.in_memory)
        self.on_disk = self.on_disk or store.file is not None
        self.nbytes += int(np.prod(features.shape)) * features.dtype.itemsize
        return features, _concat(ys), _concat(ws)

    def close(self):
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


class CachedFeatureDataset(keras.utils.PyDataset):
    """Batches of cached features; epoch `e` reads copy `e % len(copies)`.

    Args:
        copies: list of `(features, targets, sample_weight or None)`; features
            may be `np.memmap` arrays (read batch by batch).
        batch_size: int.
        shuffle: bool. Reshuffle the order every epoch.
        seed: int or None.
    """

    def __init__(self, copies, batch_size, shuffle=False, seed=None):
        super().__init__()
        self.copies = copies
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        self.order = np.arange(len(copies[0][0]))
        if shuffle:
            self.rng.shuffle(self.order)

    def __len__(self):
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, index):
        features, targets, weights = self.copies[self.epoch % len(self.copies)]
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        sorted_idx = np.sort(idx)  # sequential reads of a memmap
        restore = np.argsort(np.argsort(idx))
        x = np.asarray(features[sorted_idx])[restore]
        y = np.asarray(targets[sorted_idx])[restore]
        if weights is None:
            return x, y
        return x, y, np.asarray(weights[sorted_idx])[restore]

    def on_epoch_end(self):
        self.epoch += 1
        if self.shuffle:
            self.rng.shuffle(self.order)


class _HeadModel(keras.Model):
    """The head alone, on cached features; shares the head's variables."""

    def __init__(self, head, **kwargs):
        super().__init__(**kwargs)
        self.head = head

    def call(self, features, training=None):
        return self.head(features, training=training)


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
    model,
    inputs,
    targets,
    validation_data,
    *,
    batch_size,
    epochs,
    shuffle,
    memory_budget=DEFAULT_MEMORY_BUDGET,
    augmented_copies=0,
    fit_kwargs=None,
):
    """Trains `model.head` on cached features. Returns a `keras.callbacks.History`.

    Args:
        model: a compiled FineTuner with a frozen backbone.
        inputs: image array or finite `tf.data.Dataset` of `(images, labels[, weights])`.
        targets: labels for an array, else None.
        validation_data: None, `(x, y[, w])` arrays or a dataset.
        batch_size: int or None. Batch size for arrays (default 32); a dataset
            keeps the size of its first batch.
        epochs: int.
        shuffle: bool. Reshuffle the cached training features every epoch.
        memory_budget: int. Bytes of features kept in memory.
        augmented_copies: int. Augmented passes cached (needs augmentation).
        fit_kwargs: dict. Other `keras.Model.fit` arguments (`callbacks`,
            `verbose`, `initial_epoch`, `class_weight`, `sample_weight`, ...).
    """
    from finetunekit.data.pipeline import is_dataset

    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.pop("shuffle", None)
    sample_weight = fit_kwargs.pop("sample_weight", None)
    callbacks = fit_kwargs.pop("callbacks", None) or []
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = list(callbacks.callbacks)
    batch_size = batch_size or 32
    copies_wanted = max(1, int(augmented_copies)) if model.augmentation_layers else 1
    cache = FeatureCache(model, memory_budget)
    try:
        train_fn = feature_function(model, training=bool(model.augmentation_layers))
        copies = []
        for k in range(copies_wanted):
            copies.append(
                cache.extract(train_fn, inputs, targets, sample_weight, batch_size, f"train_{k}")
            )
        if is_dataset(inputs):
            first = next(iter(inputs.take(1)))
            batch_size = int(keras.ops.shape(_unpack(first)[0])[0])
        validation = None
        if validation_data is not None:
            eval_fn = feature_function(model, training=False)
            if is_dataset(validation_data):
                val = cache.extract(eval_fn, validation_data, None, None, batch_size, "val")
            else:
                vx, vy, vw = _unpack(tuple(validation_data))
                val = cache.extract(eval_fn, vx, vy, vw, batch_size, "val")
            validation = (
                CachedFeatureDataset([val], batch_size)
                if cache.on_disk
                else tuple(v for v in val if v is not None)
            )
        compile_config = dict(model._compile_config.config)
        # The head trains under the FineTuner's distribution strategy, if any.
        with strategy_scope(getattr(model, "_distribute_strategy", None)):
            head_model = _HeadModel(model.head, name=f"{model.name}_head")
            head_model.compile(
                optimizer=model.optimizer,
                loss=model.loss,
                loss_weights=compile_config.get("loss_weights"),
                metrics=_fresh_metrics(compile_config.get("metrics")),
                weighted_metrics=_fresh_metrics(compile_config.get("weighted_metrics")),
                run_eagerly=compile_config.get("run_eagerly", False),
                steps_per_execution=compile_config.get("steps_per_execution", 1),
                jit_compile=compile_config.get("jit_compile", "auto"),
            )
        forward = _ForwardCallbacks(callbacks, model, epochs=epochs)
        if len(copies) == 1 and not cache.on_disk:
            features, labels, weights = copies[0]
            history = head_model.fit(
                features,
                labels,
                sample_weight=weights,
                batch_size=batch_size,
                epochs=epochs,
                shuffle=shuffle,
                validation_data=validation,
                callbacks=[forward],
                **fit_kwargs,
            )
        else:
            history = head_model.fit(
                CachedFeatureDataset(copies, batch_size, shuffle=shuffle),
                epochs=epochs,
                shuffle=False,  # the dataset shuffles examples itself
                validation_data=validation,
                callbacks=[forward],
                **fit_kwargs,
            )
        history.set_model(model)
        history.feature_cache = {
            "examples": int(len(copies[0][0])),
            "copies": len(copies),
            "feature_shape": tuple(copies[0][0].shape[1:]),
            "bytes": cache.nbytes,
            "on_disk": cache.on_disk,
        }
        model.history = history
        return history
    finally:
        cache.close()
