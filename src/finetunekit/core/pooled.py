"""Pooled heads: pool the backbone's features, optional hidden layers, a float32 output layer."""

import keras
from keras import ops

from finetunekit.core.head import Head, as_outputs

POOLINGS = ("avg", "mean", "max", "cls", "flatten", "none")


def pool_features(features, pooling, padding_mask=None):
    """Pools backbone features to one vector per example.

    Args:
        features: tensor. `(batch, h, w, c)` image features, `(batch, seq, c)`
            sequence features or `(batch, c)` features already pooled.
        pooling: str. `"avg"`/`"mean"`, `"max"`, `"cls"` (first token of a
            sequence), `"flatten"` or `"none"`.
        padding_mask: optional `(batch, seq)` tensor, true for real tokens.
            Padding is left out of `"mean"` and `"max"`.

    Returns:
        A `(batch, c)` tensor (or `(batch, h*w*c)` for `"flatten"`).

    Example:
    ```python
    pool_features(np.ones((2, 4, 4, 8)), "avg").shape  # (2, 8)
    ```
    """
    rank = len(features.shape)
    if rank == 2 or pooling == "none":
        return features
    if pooling == "flatten":
        return ops.reshape(features, (ops.shape(features)[0], -1))
    if rank == 4:
        if pooling in ("avg", "mean"):
            return ops.mean(features, axis=(1, 2))
        if pooling == "max":
            return ops.max(features, axis=(1, 2))
        raise ValueError(
            f'Pooling "{pooling}" needs sequence features; image features of shape '
            f'{features.shape} accept "avg", "max" or "flatten".'
        )
    if rank == 3:
        if pooling == "cls":
            return features[:, 0, :]
        if padding_mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype=features.dtype)
        else:
            mask = ops.cast(padding_mask, features.dtype)
        mask = ops.expand_dims(mask, -1)
        if pooling in ("avg", "mean"):
            total = ops.sum(features * mask, axis=1)
            return total / ops.maximum(ops.sum(mask, axis=1), 1.0)
        if pooling == "max":
            lowest = -1e4 if features.dtype == "float16" else -1e9
            lowest = ops.convert_to_tensor(lowest, features.dtype)
            return ops.max(ops.where(mask > 0, features, lowest), axis=1)
    raise ValueError(f"Cannot pool features of shape {features.shape} with pooling={pooling!r}.")


def pooled_width(shape, pooling):
    """Width of `pool_features` output for features of `shape`."""
    if len(shape) == 2 or pooling not in ("flatten",):
        return shape[-1]
    if None in tuple(shape[1:]):
        raise ValueError(
            f'pooling="flatten" needs features of a fixed size; these have shape {tuple(shape)} '
            '(sequences vary in length). Use pooling="cls", "mean" or "max".'
        )
    width = 1
    for size in shape[1:]:
        width *= int(size)
    return width


@keras.saving.register_keras_serializable(package="finetunekit")
class Pooling(keras.layers.Layer):
    """`pool_features` as a layer (what feature caching stores for a pooled head).

    Args:
        pooling: str. See `pool_features`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    ```python
    fk.heads.Pooling("mean")(features, padding_mask)
    ```
    """

    def __init__(self, pooling, **kwargs):
        super().__init__(**kwargs)
        self.pooling = pooling

    def call(self, features, padding_mask=None):
        return pool_features(features, self.pooling, padding_mask)

    def compute_output_shape(self, features_shape, padding_mask_shape=None):
        return (features_shape[0], pooled_width(features_shape, self.pooling))

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling}


class PooledHead(Head):
    """Pool -> optional hidden dense layers with dropout -> dense output in float32.

    The output layer computes in float32, so outputs stay float32 under mixed
    precision. Subclasses say what the output layer is and own the task.

    Args:
        units: int. Width of the output layer.
        output_activation: str. Activation of the output layer.
        pooling: str. One of `"avg"`, `"mean"`, `"max"`, `"cls"`,
            `"flatten"`, `"none"`. Defaults to `"avg"`.
        hidden_units: tuple of ints. Hidden dense layer widths. Defaults to `()`.
        dropout: float. Dropout rate before each dense layer. Defaults to `0.0`.
        activation: str. Activation of the hidden layers. Defaults to `"relu"`.
        kernel_regularizer: a Keras regularizer (or its name / config) applied
            to the kernels of every dense layer of the head. Defaults to `None`.
        l1, l2: float. Shortcuts for `keras.regularizers.L1L2(l1, l2)` on the
            same kernels (not together with `kernel_regularizer`). Default `0.0`.
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    needs = ("features", "padding_mask")

    def __init__(
        self, units, output_activation=None, pooling="avg", hidden_units=(), dropout=0.0,
        activation="relu", kernel_regularizer=None, l1=0.0, l2=0.0, **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_regularizer = resolve_regularizer(kernel_regularizer, l1, l2)
        self.l1, self.l2 = float(l1), float(l2)
        if pooling not in POOLINGS:
            raise ValueError(
                f'Unknown pooling "{pooling}". Expected one of '
                f"{', '.join(repr(p) for p in POOLINGS)}. Received: pooling={pooling!r}"
            )
        if isinstance(dropout, bool) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
        if isinstance(hidden_units, int):
            hidden_units = (hidden_units,)
        self.units = int(units)
        self.output_activation = output_activation
        self.pooling = pooling
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dropout = float(dropout)
        self.activation = activation
        self.hidden_layers = [
            keras.layers.Dense(
                u, activation=activation, name=f"hidden_{i}", dtype=self.dtype_policy,
                kernel_regularizer=self._regularizer(),
            )
            for i, u in enumerate(self.hidden_units)
        ]
        self.dropout_layers = [
            keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
            for i in range(len(self.hidden_units) + 1)
        ]
        self.output_dense = keras.layers.Dense(
            self.units, activation=output_activation, name="logits", dtype="float32",
            kernel_regularizer=self._regularizer(),
        )

    def _regularizer(self):
        """A fresh copy of the head's kernel regularizer for one dense layer (or None)."""
        if self.kernel_regularizer is None:
            return None
        return keras.regularizers.deserialize(keras.regularizers.serialize(self.kernel_regularizer))

    def build(self, input_shape):
        shape = input_shape["features"] if isinstance(input_shape, dict) else input_shape
        self.build_dense(pooled_width(shape, self.pooling))

    def build_dense(self, width):
        for layer in self.hidden_layers:
            layer.build((None, width))
            width = layer.units
        self.output_dense.build((None, width))
        self.built = True

    def call(self, outputs, training=None):
        outputs = as_outputs(outputs)
        pooled = pool_features(outputs["features"], self.pooling, outputs.get("padding_mask"))
        return self.dense_stack(pooled, training=training)

    def _custom_call(self):
        return type(self).call is not PooledHead.call

    def cache_input(self, outputs):
        """Pooled features; the raw features when a subclass changed `call` (None for sequences)."""
        if self._custom_call():
            return None if "padding_mask" in outputs else outputs["features"]
        if self.pooling == "none":
            return None
        return Pooling(self.pooling, name="cached_pooling")(
            outputs["features"], outputs.get("padding_mask")
        )

    def call_cached(self, cached, training=None):
        if self._custom_call():
            return self.call({"features": cached}, training=training)
        return self.dense_stack(cached, training=training)

    def dense_stack(self, pooled, training=None):
        """Hidden dense layers with dropout, then the float32 output layer."""
        x = pooled
        for dropout, dense in zip(self.dropout_layers, self.hidden_layers):
            x = dense(dropout(x, training=training))
        if self.dropout:
            x = self.dropout_layers[-1](x, training=training)
        return self.output_dense(x)

    def compute_output_shape(self, input_shape):
        shape = input_shape["features"] if isinstance(input_shape, dict) else input_shape
        return (shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pooling": self.pooling,
                "hidden_units": self.hidden_units,
                "dropout": self.dropout,
                "activation": self.activation,
                **regularizer_config(self.kernel_regularizer, self.l1, self.l2),
            }
        )
        return config


def resolve_regularizer(kernel_regularizer=None, l1=0.0, l2=0.0):
    """The kernel regularizer of a head's dense layers from `kernel_regularizer` / `l1` / `l2`.

    Args:
        kernel_regularizer: None, a `keras.regularizers.Regularizer`, its name
            (`"l2"`) or its serialized config.
        l1, l2: float >= 0. Shortcuts for `keras.regularizers.L1L2(l1, l2)`.

    Returns:
        A `keras.regularizers.Regularizer` or None.

    Example:
    ```python
    resolve_regularizer(l2=1e-4)  # keras.regularizers.L1L2(l1=0.0, l2=1e-4)
    ```
    """
    for name, value in (("l1", l1), ("l2", l2)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
    if kernel_regularizer is not None and (l1 or l2):
        raise ValueError(
            "Pass either kernel_regularizer=... or l1=/l2= (a shortcut for "
            f"keras.regularizers.L1L2(l1, l2)), not both. Received: "
            f"kernel_regularizer={kernel_regularizer!r}, l1={l1}, l2={l2}"
        )
    if l1 or l2:
        return keras.regularizers.L1L2(l1=float(l1), l2=float(l2))
    if kernel_regularizer is None:
        return None
    try:
        return keras.regularizers.get(kernel_regularizer)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "`kernel_regularizer` must be a Keras regularizer such as "
            'keras.regularizers.L2(1e-4) or a name ("l1", "l2", "l1_l2"). '
            f"Received: kernel_regularizer={kernel_regularizer!r}"
        ) from error


def regularizer_config(kernel_regularizer, l1, l2):
    """The `get_config` entries of a head's regularisation (only the ones that are set)."""
    if l1 or l2:
        return {"l1": l1, "l2": l2}
    if kernel_regularizer is None:
        return {}
    return {"kernel_regularizer": keras.regularizers.serialize(kernel_regularizer)}
