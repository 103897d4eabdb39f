"""Learning-rate range test ("LR finder"): loss against an exponentially growing LR."""

import math

import keras
import numpy as np

from finetunekit.core.plotting import save_figure


class LRFinderResult:
    """What `FineTuner.find_lr` measured.

    Attributes:
        learning_rates: list of float. Learning rate of each step.
        losses: list of float. Raw training loss of each step.
        smoothed_losses: list of float. Bias-corrected exponential moving
            average of the losses.
        suggestion: float. The learning rate of the steepest descent of the
            smoothed loss (against log LR), before its minimum.
        suggestion_min: float. The learning rate of the smallest smoothed loss,
            divided by 10 (a conservative alternative).
    """

    def __init__(self, learning_rates, losses, smoothed_losses):
        self.learning_rates = list(learning_rates)
        self.losses = list(losses)
        self.smoothed_losses = list(smoothed_losses)
        self.suggestion, self.suggestion_min = _suggest(self.learning_rates, self.smoothed_losses)

    def __repr__(self):
        return (
            f"LRFinderResult(steps={len(self.losses)}, suggestion={self.suggestion:.3g}, "
            f"suggestion_min={self.suggestion_min:.3g})"
        )

    def plot(self, path=None):
        """Plots smoothed loss against LR (log scale); saves to `path` if given.

        Returns:
            The matplotlib figure.

        Raises:
            ImportError: matplotlib is not installed (`pip install finetunekit[plot]`).
        """
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError(
                "LRFinderResult.plot needs matplotlib: pip install 'finetunekit[plot]'"
            ) from error
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(self.learning_rates, self.smoothed_losses, label="smoothed loss")
        axis.plot(self.learning_rates, self.losses, alpha=0.3, label="loss")
        axis.axvline(self.suggestion, color="red", linestyle="--", label="suggestion")
        axis.set_xscale("log")
        axis.set_xlabel("learning rate")
        axis.set_ylabel("loss")
        axis.legend()
        if path is not None:
            save_figure(figure, path, bbox_inches="tight")
            plt.close(figure)
        return figure


def _suggest(learning_rates, smoothed):
    lrs = np.asarray(learning_rates, dtype="float64")
    losses = np.asarray(smoothed, dtype="float64")
    finite = np.isfinite(losses)
    if not finite.any():
        raise ValueError("The LR finder saw no finite loss; lower start_lr.")
    lrs, losses = lrs[finite], losses[finite]
    best = int(np.argmin(losses))
    suggestion_min = float(lrs[best] / 10.0)
    if best < 2:
        return suggestion_min, suggestion_min
    slopes = np.gradient(losses[: best + 1], np.log(lrs[: best + 1]))
    return float(lrs[int(np.argmin(slopes))]), suggestion_min


def _clone_optimizer(optimizer, learning_rate):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    config = optimizer.get_config()
    config["learning_rate"] = float(learning_rate)
    for key in ("use_ema", "gradient_accumulation_steps"):
        config.pop(key, None)
    return optimizer.__class__.from_config(config)


def run_lr_range_test(
    model, inputs, targets=None, batch_size=32, start_lr=1e-7, end_lr=1.0, num_steps=100,
    smoothing=0.98, diverge_factor=4.0, seed=None,
):
    """Trains for `num_steps` steps with an exponentially growing LR, then restores the model.

    A copy of the model's optimizer (same class and settings, constant LR) takes
    the steps, so the model's own optimizer state is untouched; every model
    variable (weights, BatchNorm statistics, seed states) is restored exactly.

    Args:
        model: a compiled `keras.Model` (a FineTuner).
        inputs: arrays or a `tf.data.Dataset` of `(x, y)` batches.
        targets: array or None (with a dataset).
        batch_size: int. Batch size for arrays.
        start_lr, end_lr: float. First and last learning rate.
        num_steps: int. Number of steps (the data repeat as needed).
        smoothing: float. EMA factor of the smoothed loss.
        diverge_factor: float. Stops early when the smoothed loss exceeds this
            multiple of its minimum.
        seed: int or None. Shuffle seed for arrays.

    Returns:
        An `LRFinderResult`.
    """
    import tensorflow as tf

    if not 0 < start_lr < end_lr:
        raise ValueError(
            f"Need 0 < start_lr < end_lr. Received: start_lr={start_lr}, end_lr={end_lr}"
        )
    if int(num_steps) < 2:
        raise ValueError(f"`num_steps` must be >= 2. Received: num_steps={num_steps}")
    if targets is None:
        dataset = inputs.repeat()
    else:
        dataset = (
            tf.data.Dataset.from_tensor_slices((inputs, targets))
            .shuffle(len(inputs), seed=seed)
            .repeat()
            .batch(batch_size)
        )
    saved = [v.numpy() for v in model.variables]
    optimizer = _clone_optimizer(model.optimizer, start_lr)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function
    def step(batch):
        x, y = batch[0], batch[1]
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss

    factor = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    try:
        for i, batch in enumerate(dataset.take(int(num_steps))):
            lr = start_lr * factor**i
            optimizer.learning_rate.assign(lr)
            loss = float(step(batch))
            average = smoothing * average + (1 - smoothing) * loss
            value = average / (1 - smoothing ** (i + 1))
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(value)
            if not math.isfinite(value) or value > diverge_factor * best:
                break
            best = min(best, value)
    finally:
        for variable, value in zip(model.variables, saved, strict=True):
            variable.assign(value)
    return LRFinderResult(lrs, losses, smoothed)


def find_lr(model, x, y=None, start_lr=1e-7, end_lr=1.0, num_steps=100, batch_size=None, **kwargs):
    """`FineTuner.find_lr`: prepares the data with the model's pipeline, then runs the range test.

    Args:
        model: a compiled FineTuner.
        x, y: training data, in any form `fit` accepts.
        start_lr, end_lr, num_steps, batch_size: see `run_lr_range_test`.
        **kwargs: `seed`, `smoothing`, `diverge_factor`, and data options.

    Returns:
        An `LRFinderResult`.
    """
    options = {k: kwargs.pop(k) for k in ("seed", "smoothing", "diverge_factor") if k in kwargs}
    prepared = model.prepare(x, y, batch_size, shuffle=True, seed=options.get("seed"), **kwargs)
    if prepared.class_names is not None and model.class_names is None:
        model.class_names = list(prepared.class_names)
    train = prepared.train
    return run_lr_range_test(
        model, train.x, train.y, batch_size=batch_size or 32, start_lr=start_lr,
        end_lr=end_lr, num_steps=num_steps, **options,
    )
