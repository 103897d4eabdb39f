"""Where feature caching keeps its features: memory up to a budget, then a memory-mapped file."""

import math
import os
import shutil
import tempfile

import keras
import numpy as np

from finetunekit.core.data.pipeline import is_dataset

#: Default memory budget of a feature cache, in bytes (2 GiB).
DEFAULT_MEMORY_BUDGET = 2 * 1024**3


def unpack(batch):
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        return batch[0], batch[1], batch[2]
    return batch, None, None


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
            x, y, w = unpack(batch)
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


def memory_dataset(features, targets, sample_weight, batch_size, shuffle, seed=None):
    """A `tf.data.Dataset` of batches of in-memory features, built once for all epochs.

    The arrays are held as tensors once; each epoch draws a fresh order of
    indices (when `shuffle`) and gathers its batches, so no per-epoch adapter
    is rebuilt. Without `shuffle` the batches come in the arrays' order.
    """
    import tensorflow as tf

    arrays = tuple(a for a in (features, targets, sample_weight) if a is not None)
    tensors = tuple(tf.convert_to_tensor(a) for a in arrays)
    indices = tf.data.Dataset.range(len(features))
    if shuffle:
        indices = indices.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return (
        indices.batch(int(batch_size))
        .map(lambda i: tuple(tf.gather(t, i) for t in tensors))
        .prefetch(tf.data.AUTOTUNE)
    )


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
