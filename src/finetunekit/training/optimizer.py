"""Optimizers for fine-tuning: `LayerDecayAdamW` and the factory behind `compile(optimizer="auto")`.

`fk.optimizers` is this module; its public surface is `LayerDecayAdamW`.
"""

import math

import keras
import numpy as np

from finetunekit.core._keras_compat import adam_slots, optimizer_variable_key
from finetunekit.training.schedules import build_learning_rate

__all__ = ["LayerDecayAdamW"]


def check_optimizer_options(optimizer, schedule, **options):
    """Checks the `"auto"` optimizer's options; returns those set.

    `gradient_accumulation_steps` must be a whole number >= 1 (1, like None,
    updates the weights every step); `clipnorm` a number > 0.

    Args:
        optimizer: `"auto"` or the user's optimizer.
        schedule: the `compile(schedule=...)` argument.
        **options: `clipnorm`, `gradient_accumulation_steps`, `use_ema`.

    Returns:
        A dict of the options that are set.

    Raises:
        ValueError: a value out of range, or `"auto"`-only options with a
            user's own optimizer.
    """
    steps = options.get("gradient_accumulation_steps")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(
                "`gradient_accumulation_steps` must be a whole number >= 1: the number of "
                "batches whose gradients are summed before each weight update (None or 1: "
                f"update every batch). Received: gradient_accumulation_steps={steps!r}"
            )
        options["gradient_accumulation_steps"] = int(steps) if steps > 1 else None
    clipnorm = options.get("clipnorm")
    if clipnorm is not None and not _positive_number(clipnorm):
        raise ValueError(
            "`clipnorm` must be a number > 0 (the largest gradient norm kept), or None for no "
            f"clipping. Received: clipnorm={clipnorm!r}"
        )
    chosen = {key: value for key, value in options.items() if value is not None and value is not False}
    auto = isinstance(optimizer, str) and optimizer == "auto"
    if not auto and (chosen or schedule):
        names = sorted(chosen) + (["schedule"] if schedule else [])
        raise ValueError(
            f"{', '.join(names)} configure the optimizer=\"auto\" AdamW; set them on your own "
            f"optimizer instead. Received: optimizer={optimizer!r}"
        )
    return chosen


def _positive_number(value):
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_learning_rate(learning_rate, name="learning_rate"):
    """Raises unless `learning_rate` is None, a schedule, or a finite number > 0.

    Args:
        learning_rate: the value passed.
        name: str. The argument's name in the message.

    Raises:
        ValueError: zero, negative, NaN/inf or non-numeric rates.
    """
    if learning_rate is None or callable(learning_rate):
        return  # the default, or a keras.optimizers.schedules.LearningRateSchedule
    if not _positive_number(learning_rate):
        raise ValueError(
            f"`{name}` must be a number > 0 (typical fine-tuning rates are 1e-5 to 1e-3); "
            "a zero rate trains nothing and a negative one climbs the loss. "
            f"Received: {name}={learning_rate!r}"
        )


def build_optimizer(
    model, learning_rate, weight_decay=0.01, schedule=None, warmup_steps=0, decay_steps=None,
    **options,
):
    """AdamW for fine-tuning: layer-wise learning rates when set, no decay on 1-D weights.

    Weight decay skips every variable of rank <= 1 (biases, normalisation
    scales and offsets, whatever a layer calls them), as timm does.

    Args:
        model: the FineTuner (its `backbone_kind` gives layer-wise multipliers).
        learning_rate: float. Base learning rate (the head's).
        weight_decay: float. Decoupled weight decay.
        schedule, warmup_steps, decay_steps: see `fk.schedules.build_learning_rate`.
        **options: `clipnorm`, `gradient_accumulation_steps`, `use_ema`.

    Returns:
        A `fk.optimizers.LayerDecayAdamW` (a `keras.optimizers.AdamW`; no
        multipliers without `layer_decay`).
    """
    learning_rate = build_learning_rate(learning_rate, schedule, warmup_steps, decay_steps)
    optimizer = LayerDecayAdamW(
        learning_rate=learning_rate, weight_decay=weight_decay,
        lr_multipliers=model.backbone_kind.learning_rate_multipliers(), **options,
    )
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.weights if len(v.shape) <= 1])
    return optimizer


def resolve_compile(
    model, optimizer, loss, metrics, learning_rate=None, weight_decay=0.01, label_smoothing=0.0,
    schedule=None, warmup_steps=0, decay_steps=None, **optimizer_options,
):
    """The Keras optimizer, loss and metrics of `FineTuner.compile` (see its arguments).

    `"auto"` values come from the backbone kind (learning rate, layer-wise
    multipliers) and the head (loss, metrics); under `mixed_float16` the
    optimizer gets loss scaling.

    Returns:
        `(optimizer, loss, metrics)`.
    """
    check_learning_rate(learning_rate)
    options = check_optimizer_options(optimizer, schedule, **optimizer_options)
    if isinstance(optimizer, str) and optimizer == "auto":
        if learning_rate is None:
            learning_rate = model.backbone_kind.default_learning_rate(model.unfreeze)
        optimizer = build_optimizer(
            model, learning_rate, weight_decay, schedule, warmup_steps, decay_steps, **options
        )
    if isinstance(loss, str) and loss == "auto":
        loss = model.head.default_loss(label_smoothing)
    elif label_smoothing:
        raise ValueError('`label_smoothing` applies to loss="auto"; smooth your own loss.')
    else:
        loss = model.head.check_loss(loss)
    if isinstance(metrics, str) and metrics == "auto":
        metrics = model.head.default_metrics()
    if model.policy_name == "mixed_float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.get(optimizer))
    return optimizer, loss, metrics


_FUSED_DTYPES = ("float16", "bfloat16", "float32", "float64")


def fused_adam_update(optimizer, gradient, variable, learning_rate):
    """Keras' Adam update of one variable as TensorFlow's single `ResourceApplyAdam` op.

    Keras writes the update as about twenty element-wise ops per variable, so
    a full fine-tune of a 6-layer encoder adds thousands of ops to the train
    step, traced and optimised by TensorFlow before the first batch runs. The
    fused kernel computes the same formula (`m += (g - m)(1 - b1)`,
    `v += (g^2 - v)(1 - b2)`, `var -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)`)
    in one op.

    Args:
        optimizer: a `keras.optimizers.Adam` or `AdamW` (built).
        gradient: the variable's gradient.
        variable: the backend variable `update_step` receives.
        learning_rate: the learning rate of this step.

    Returns:
        bool. False where the fused op does not apply (another backend,
        `amsgrad`, a sparse gradient, a non-float variable), and nothing was
        updated: the caller runs Keras' own update.
    """
    if keras.backend.backend() != "tensorflow" or optimizer.amsgrad:
        return False
    import tensorflow as tf

    dtype = keras.backend.standardize_dtype(variable.dtype)
    if (
        dtype not in _FUSED_DTYPES
        or isinstance(gradient, tf.IndexedSlices)
        or not hasattr(variable, "handle")
    ):
        return False
    m, v = adam_slots(optimizer, variable)
    if keras.backend.standardize_dtype(m.dtype) != dtype or not hasattr(m, "handle"):
        return False
    step = tf.cast(optimizer.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(optimizer.beta_1, dtype), tf.cast(optimizer.beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.handle, v=v.handle,
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(optimizer.epsilon, dtype), grad=tf.cast(gradient, dtype),
    )
    return True


@keras.saving.register_keras_serializable(package="finetunekit")
class LayerDecayAdamW(keras.optimizers.AdamW):
    """AdamW whose learning rate is scaled per variable (layer-wise learning-rate decay).

    Layer-wise decay trains the top of a pretrained backbone faster than its
    bottom. `fk.FineTuner(..., layer_decay=0.8).compile()` builds the
    multipliers with timm's convention for every backbone kind: with `L`
    groups (the stem or embeddings first), group `i` gets
    `learning_rate * decay ** (L - i)` (the top block `decay` times the
    base rate) and the head the full rate.

    Adam divides the gradient by its running RMS, so scaling gradients would
    change nothing: the learning rate itself is scaled, in `update_step`.
    On TensorFlow each variable's update is one fused `ResourceApplyAdam` op
    (the same formula as `keras.optimizers.AdamW`; see `fused_adam_update`),
    which keeps the traced train step of a full fine-tune small.

    Args:
        learning_rate: float or schedule. Base (top-layer / head) rate.
            Defaults to `0.001`.
        weight_decay: float. Decoupled weight decay. Defaults to `0.004`.
        lr_multipliers: dict of `{variable.path: float}`. Learning-rate
            multiplier per variable path; variables not listed use 1.
        **kwargs: other `keras.optimizers.AdamW` arguments (`beta_1`, ...).

    Example:
    ```python
    opt = fk.optimizers.LayerDecayAdamW(
        learning_rate=5e-5, lr_multipliers={"token_embedding/embeddings": 0.5}
    )
    ```
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, lr_multipliers=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        multipliers = {str(k): float(v) for k, v in dict(lr_multipliers or {}).items()}
        bad = {k: v for k, v in multipliers.items() if not v >= 0.0}
        if bad:
            raise ValueError(
                f"Learning-rate multipliers must be >= 0. Received: {dict(list(bad.items())[:3])}"
            )
        self.lr_multipliers = multipliers

    def build(self, var_list):
        super().build(var_list)
        # Backends hand update_step their own variables (no Keras path): key by the
        # optimizer's own variable key instead.
        self._scales = {
            optimizer_variable_key(self, v): self.lr_multipliers[v.path]
            for v in var_list
            if v.path in self.lr_multipliers
        }

    def multiplier(self, variable):
        """The learning-rate multiplier of `variable` (1.0 when not listed)."""
        path = getattr(variable, "path", None)
        if path in self.lr_multipliers:
            return self.lr_multipliers[path]
        return getattr(self, "_scales", {}).get(optimizer_variable_key(self, variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        scale = self.multiplier(variable)
        if scale != 1.0:
            learning_rate = keras.ops.multiply(
                keras.ops.cast(learning_rate, variable.dtype),
                keras.ops.cast(scale, variable.dtype),
            )
        if not fused_adam_update(self, gradient, variable, learning_rate):
            super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self.lr_multipliers)
        return config
