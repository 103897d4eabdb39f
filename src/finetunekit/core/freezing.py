"""Freezing strategies: which backbone layers train, with BatchNorm kept frozen."""

import keras
import numpy as np

from finetunekit.core._keras_compat import sublayers

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


def open_norm_layers(groups, names):
    """Lets the BatchNormalization layers of the named blocks train (random-weights backbones).

    Args:
        groups: list of `(block_name, [layers])`, as from `block_groups`.
        names: the names of the unfrozen blocks (`apply_unfreeze`'s result).

    Returns:
        int. The number of normalisation layers opened.
    """
    opened = 0
    chosen = set(names)
    for name, layers in groups:
        if name not in chosen:
            continue
        for layer in layers:
            for sub in [layer, *sublayers(layer)]:
                if isinstance(sub, _NORM_STATS_LAYERS):
                    sub.trainable = True
                    opened += 1
    return opened


#: Keys of `unfreeze` as a dict: the parts of an encoder-decoder, opened separately.
UNFREEZE_PARTS = ("encoder", "decoder")


def normalize_unfreeze(unfreeze):
    """Checks an `unfreeze` value: `0`, a positive int, `"all"`, or a dict per part.

    A dict such as `{"encoder": 1, "decoder": 2}` opens the last blocks of
    an encoder-decoder's encoder and decoder separately (a missing part
    stays frozen); each value is `0`, an int or `"all"`.
    """
    if isinstance(unfreeze, dict):
        unknown = sorted(set(map(str, unfreeze)) - set(UNFREEZE_PARTS))
        if unknown or not unfreeze:
            raise ValueError(
                f"`unfreeze` as a dict names the parts of an encoder-decoder: "
                f"{', '.join(map(repr, UNFREEZE_PARTS))} (e.g. {{'encoder': 1, 'decoder': 2}}). "
                f"Received: unfreeze={unfreeze!r}"
            )
        return {part: _normalize_count(unfreeze.get(part, 0)) for part in UNFREEZE_PARTS}
    return _normalize_count(unfreeze)


def _normalize_count(unfreeze):
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


def apply_unfreeze_parts(backbone, parts, unfreeze):
    """Freezes an encoder-decoder, then opens the last blocks of each part separately.

    Args:
        backbone: keras.Model. The backbone.
        parts: `{"encoder": [(block_name, [layers]), ...], "decoder": [...]}`,
            input side first. The shared stem (embeddings) stays frozen.
        unfreeze: a dict from `normalize_unfreeze`, e.g. `{"encoder": 1, "decoder": "all"}`.

    Returns:
        The list of unfrozen block names.

    Raises:
        ValueError: a count exceeds the blocks of its part.
    """
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = False
    opened = []
    for part, count in unfreeze.items():
        blocks = parts[part]
        if count != "all" and count > len(blocks):
            raise ValueError(
                f"`unfreeze={{'{part}': {count}}}` but the {part} has {len(blocks)} blocks. "
                f'Use a number up to {len(blocks)}, or "all".'
            )
        chosen = blocks if count == "all" else blocks[len(blocks) - count :]
        for name, layers in chosen:
            for layer in layers:
                layer.trainable = True
            opened.append(name)
    if not opened:
        backbone.trainable = False
    _freeze_batchnorm(backbone)
    return opened


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
    if isinstance(unfreeze, dict):
        raise ValueError(
            f"`unfreeze={unfreeze!r}` opens the encoder and decoder of an encoder-decoder "
            "(a Seq2SeqHead's backbone) separately; this backbone has one stack of blocks. "
            'Pass a number of blocks or "all".'
        )
    blocks = [g for g in groups if g[0] != "stem"]
    if unfreeze == 0:
        backbone.trainable = False
        for layer in backbone.layers:  # a keras-hub backbone rebuilt from its config kept
            layer.trainable = False  # its layers trainable under a frozen model
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


def enable_lora(model, rank):
    """keras-hub's `model.enable_lora(rank)`, once: a backbone given again keeps its LoRA factors.

    A backbone instance passed to a second `FineTuner` (after the first was
    refused, or to compare heads) already has its factors; enabling them again
    would raise inside keras-hub.

    Args:
        model: a keras-hub Backbone.
        rank: int. The LoRA rank.

    Returns:
        None.
    """
    if not lora_paths(model):
        model.enable_lora(rank)


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
