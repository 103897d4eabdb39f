"""Batch-norm statistics of a backbone trained from random weights.

A pretrained backbone keeps its BatchNormalization layers frozen: their moving
statistics describe the data it was trained on. A backbone built from random
weights has statistics that describe nothing (mean 0, variance 1), so its
normalisation layers train in training mode; but Keras' moving averages lag
far behind the weights during a short run (MobileNetV2 uses a momentum of
0.999), and a model that fits its training batches can predict chance at
inference. After training, `recalibrate_norm_stats` recomputes the statistics
with the final weights, as an exact average over training batches (the
"precise BN" of Wu & Johnson, 2021).
"""

import keras
import numpy as np

from finetunekit.core._keras_compat import sublayers

#: Batches averaged at the most (a few thousand examples estimate the statistics well).
MAX_BATCHES = 100


def trainable_norm_layers(model):
    """The BatchNormalization layers of `model` (nested ones too) that train."""
    return [
        layer for layer in [model, *sublayers(model)]
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def _input_batches(batches, batch_size):
    """The model inputs of a `Batches`, batch by batch."""
    if batches.is_dataset:
        for element in batches.x:
            yield element[0] if isinstance(element, tuple) else element
        return
    for start in range(0, len(batches.x), batch_size):
        yield batches.x[start : start + batch_size]


def recalibrate_norm_stats(model, batches, batch_size=32, max_batches=MAX_BATCHES):
    """Recomputes the moving statistics of `model`'s trainable BatchNormalization layers.

    Each layer's moving mean and variance become the average of the batch
    statistics over up to `max_batches` batches of `batches`, computed with
    the model's current weights (nothing else changes).

    Args:
        model: keras.Model. A trained model.
        batches: a `Batches` of its training inputs.
        batch_size: int. Batch size for array inputs. Defaults to 32.
        max_batches: int. Batches averaged at the most. Defaults to 100.

    Returns:
        int. The number of batches averaged (0 without trainable BatchNormalization).

    Example:
    ```python
    recalibrate_norm_stats(ft, ft.prepare(x, y, batch_size=32).train)
    ```
    """
    layers = trainable_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    count = 0
    try:
        for inputs in _input_batches(batches, batch_size):
            if count == max_batches:
                break
            for layer in layers:  # a running mean: batch k weighs 1 / (k + 1)
                layer.momentum = count / (count + 1)
            model(inputs, training=True)
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return count
