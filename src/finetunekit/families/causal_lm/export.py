"""`ft.export(folder, format="keras_hub")`: a keras-hub preset with the LoRA factors merged.

The trained backbone's variables go, layer by layer, into a fresh backbone
built from its config without LoRA. Keras' own `save_own_variables` of a
LoRA-enabled `Dense` / `EinsumDense` / `Embedding` writes the merged kernel
`W + (alpha / rank) * A @ B` (for an int8 layer: dequantised, merged and
quantised again), so the fresh layers hold the merged weights. A GGUF Llama
with tied embeddings (`GGUFLlamaBackbone`, a finetunekit class) becomes a
plain keras-hub `Llama3Backbone` with the output projection copied from the
embedding, so that `keras_hub.models.CausalLM.from_preset(folder)` rebuilds it.
"""

import os

from keras import ops

from finetunekit.core._keras_compat import sublayers
from finetunekit.core.files import atomic_path


def is_quantized(model):
    """True when some layer of `model` already computes in a quantized mode (a reloaded model)."""
    return any(
        getattr(layer, "quantization_mode", None) for layer in sublayers(model)
    )


def _untied_float_backbone(kind):
    """A plain keras-hub backbone for a tied GGUF Llama in float, or None when not applicable."""
    model = kind.model
    if type(model).__name__ != "GGUFLlamaBackbone" or not model.tie_word_embeddings:
        return None
    if is_quantized(model):
        return None
    config = {**model.get_config(), "tie_word_embeddings": False}
    return kind.task_class.backbone_cls.from_config(config)


def _copy_variables(source, target):
    """Moves every layer's own variables from `source` into `target` (LoRA merged by Keras)."""
    sources = sublayers(source)
    targets = sublayers(target)
    if [type(layer) for layer in sources] != [type(layer) for layer in targets]:
        raise ValueError(
            f"Cannot merge {type(source).__name__} into {type(target).__name__}: their layers differ."
        )
    for src, dst in zip(sources, targets):
        if src.name == "token_embedding" and getattr(src, "tie_weights", False) and not getattr(
            dst, "tie_weights", True
        ):
            embeddings = src.embeddings
            dst.embeddings.assign(embeddings)
            dst.reverse_embeddings.assign(ops.transpose(embeddings))
            continue
        store = {}
        src.save_own_variables(store)
        if store:
            dst.load_own_variables(store)


def merged_backbone(kind):
    """A copy of `kind.model` without LoRA, its LoRA factors merged into the base weights.

    Args:
        kind: a `CausalLMBackbone`.

    Returns:
        A keras-hub Backbone (the same class, or `Llama3Backbone` for a tied
        float GGUF Llama) with no LoRA weights.

    Example:
    ```python
    backbone = merged_backbone(lm.backbone_kind)
    ```
    """
    model = kind.model
    fresh = _untied_float_backbone(kind)
    if fresh is None:
        fresh = type(model).from_config(model.get_config())
    _copy_variables(model, fresh)
    return fresh


def write_keras_hub_preset(kind, directory):
    """Writes a keras-hub preset folder (config, merged weights, tokenizer) atomically.

    Args:
        kind: a `CausalLMBackbone`.
        directory: str. The preset folder; replaced as a whole when it exists.

    Returns:
        The folder's path.

    Example:
    ```python
    write_keras_hub_preset(lm.backbone_kind, "assistant_preset/")
    keras_hub.models.CausalLM.from_preset("assistant_preset/")
    ```
    """
    directory = os.fspath(directory)
    if os.path.isfile(directory):
        raise ValueError(f'format="keras_hub" writes a folder; {directory!r} is a file.')
    backbone = merged_backbone(kind)
    task = kind.task_class(backbone=backbone, preprocessor=kind.preprocessor)
    with atomic_path(directory, directory=True) as temp:
        task.save_to_preset(temp)
    return directory
