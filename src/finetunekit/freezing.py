"""Freezing strategies: which backbone layers train, with BatchNorm kept frozen."""

import keras
import numpy as np

from finetunekit._keras_compat import sublayers

_NORM_STATS_LAYERS = (keras.layers.BatchNormalization,)


def _freeze_batchnorm(model):
    """Sets every BatchNormalization layer (nested ones too) to `trainable=False`.

    In Keras 3 a non-trainable BatchNormalization layer runs in inference mode:
    it normalises with its moving statistics and never updates them, which is
    what fine-tuning on small batches needs.
    """
    for layer in [model, *sublayers(model)]:
        if isinstance(layer, _NORM_STATS_LAYERS):
            layer.trainable = False


def normalize_unfreeze(unfreeze):
    """Checks an `unfreeze` value: `0`, a positive int or `"all"`."""
    if isinstance(unfreeze, str):
        if unfreeze.lower() != "all":
            raise ValueError(
                f'`unfreeze` must be 0 (backbone frozen), a number of blocks or "all". '
                f"Received: unfreeze={unfreeze!r}"
            )
        return "all"
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, (int, np.integer)) or unfreeze < 0:
        raise ValueError(
            f'`unfreeze` must be 0 (backbone frozen), a number of blocks or "all". '
            f"Received: unfreeze={unfreeze!r}"
        )
    return int(unfreeze)


def apply_unfreeze(backbone, groups, unfreeze):
    """Freezes a backbone, then unfreezes its last blocks.

    Args:
        backbone: keras.Model. The backbone.
        groups: list of `(block_name, [layers])`, input side first, as from
            `block_groups`. A leading `"stem"` block only trains with `"all"`.
        unfreeze: `0` (all frozen), int N (last N blocks train) or `"all"`.

    Returns:
        The list of unfrozen block names.

    Raises:
        ValueError: if N exceeds the number of blocks.
    """
    unfreeze = normalize_unfreeze(unfreeze)
    blocks = [g for g in groups if g[0] != "stem"]
    if unfreeze == 0:
        backbone.trainable = False
        return []
    backbone.trainable = True
    if unfreeze == "all":
        chosen = groups
    else:
        if unfreeze > len(blocks):
            raise ValueError(
                f"`unfreeze={unfreeze}` but the backbone has {len(blocks)} blocks "
                f"({', '.join(name for name, _ in blocks)}). Use a number up to "
                f'{len(blocks)}, or unfreeze="all".'
            )
        chosen = blocks[len(blocks) - unfreeze :]
        for layer in backbone.layers:
            layer.trainable = False
    for _, layers in chosen:
        for layer in layers:
            layer.trainable = True
    _freeze_batchnorm(backbone)
    return [name for name, _ in chosen]


def lora_paths(model):
    """Paths of the LoRA weights of a keras-hub backbone after `enable_lora` (its trainable ones)."""
    return [variable.path for variable in model.trainable_variables if "lora" in variable.path]


def train_lora_only(model, lora_paths, unfreeze):
    """Makes only the LoRA weights of `model` trainable (what `lora_rank=` means).

    Args:
        model: a keras-hub backbone with LoRA enabled.
        lora_paths: iterable of variable paths of the LoRA weights that train.
        unfreeze: the FineTuner's `unfreeze`; anything but 0 is refused, since
            with LoRA the backbone's own weights stay frozen.

    Returns:
        `["lora"]`, the name of the one trainable block.
    """
    if unfreeze != 0:
        raise ValueError(
            "With lora_rank the backbone trains only its LoRA weights; use unfreeze=0. "
            f"Received: unfreeze={unfreeze!r}"
        )
    model.trainable = True
    keep = set(lora_paths)
    for variable in model.weights:
        variable.trainable = variable.path in keep
    return ["lora"]
