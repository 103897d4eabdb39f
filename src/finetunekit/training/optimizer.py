"""The optimizer factory behind `FineTuner.compile(optimizer="auto")`."""

import keras

from finetunekit.schedules import build_learning_rate

#: `compile` arguments that configure the `"auto"` optimizer only.
AUTO_OPTIMIZER_OPTIONS = ("clipnorm", "gradient_accumulation_steps", "use_ema")


def check_optimizer_options(optimizer, schedule, **options):
    """Raises when `"auto"`-only options come with a user's own optimizer; returns those set."""
    chosen = {key: value for key, value in options.items() if value not in (None, False)}
    auto = isinstance(optimizer, str) and optimizer == "auto"
    if not auto and (chosen or schedule):
        names = sorted(chosen) + (["schedule"] if schedule else [])
        raise ValueError(
            f"{', '.join(names)} configure the optimizer=\"auto\" AdamW; set them on your own "
            f"optimizer instead. Received: optimizer={optimizer!r}"
        )
    return chosen


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
        A `keras.optimizers.AdamW` (or `fk.optimizers.LayerDecayAdamW`).
    """
    learning_rate = build_learning_rate(learning_rate, schedule, warmup_steps, decay_steps)
    multipliers = model.backbone_kind.learning_rate_multipliers()
    if multipliers:
        from finetunekit.optimizers import LayerDecayAdamW

        optimizer = LayerDecayAdamW(
            learning_rate=learning_rate, weight_decay=weight_decay, lr_multipliers=multipliers,
            **options,
        )
    else:
        optimizer = keras.optimizers.AdamW(
            learning_rate=learning_rate, weight_decay=weight_decay, **options
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
