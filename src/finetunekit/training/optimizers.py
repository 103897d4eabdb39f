"""Optimizers for fine-tuning: AdamW with per-variable (layer-wise decayed) learning rates."""

import keras

from finetunekit.core._keras_compat import optimizer_variable_key


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
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self.lr_multipliers)
        return config
