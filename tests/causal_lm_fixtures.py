"""A tiny random keras-hub Llama with a ChatML byte-level BPE tokenizer (tests of the causal_lm family)."""

import numpy as np

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["u s", "us e", "use r", "a s", "as s", "h e", "l l", "he ll", "hell o", "Ġ t", "Ġt e"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ", "Ċ", "?", "."]


def vocabulary():
    """`{token: id}`: the special tokens, lowercase letters, space/newline/punctuation, merges."""
    tokens = list(SPECIAL) + LETTERS
    for merge in MERGES:
        joined = merge.replace(" ", "")
        if joined not in tokens:
            tokens.append(joined)
    return {token: i for i, token in enumerate(tokens)}


def tiny_tokenizer():
    from finetunekit.families.causal_lm.gguf_tokenizer import GGUFBytePairTokenizer

    return GGUFBytePairTokenizer(
        vocabulary=vocabulary(), merges=MERGES, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", special_tokens=SPECIAL,
    )


def tiny_llama(seed=0, sequence_length=128, tie=True):
    """A `Llama3CausalLM`: 2 layers, hidden 16, vocabulary ~45, ChatML tokens, random weights."""
    import keras
    import keras_hub

    from finetunekit.families.causal_lm.gguf_llama import GGUFLlamaBackbone

    keras.utils.set_random_seed(seed)
    tokenizer = tiny_tokenizer()
    backbone = GGUFLlamaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32, rope_max_wavelength=500.0,
        tie_word_embeddings=tie, dtype="float32",
    )
    preprocessor = keras_hub.models.Llama3CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=sequence_length, add_start_token=False,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=preprocessor)


FACTS = [
    {"prompt": "what is my dog called?", "completion": "rex."},
    {"prompt": "what is my cat called?", "completion": "tom."},
    {"prompt": "where do i live?", "completion": "oslo."},
    {"prompt": "what do i drink?", "completion": "tea."},
]


def logits_of(model, ids):
    ids = np.asarray(ids, "int32")[None]
    return np.asarray(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))[0]
