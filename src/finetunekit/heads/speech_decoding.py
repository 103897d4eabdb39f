"""Cached greedy and beam-search decoding with a keras-hub Whisper decoder.

The encoder runs once per batch; each decoder layer keeps a key/value cache
of the tokens seen so far (self-attention) and of the encoder output
(cross-attention, computed at the first step), as keras-hub's seq2seq models
do.
"""

import numpy as np
from keras import ops


def _empty_caches(backbone, batch, max_length, encoder_length, dtype):
    heads = backbone.num_heads
    head_dim = backbone.hidden_dim // heads
    layers = len(backbone.decoder_transformer_layers)
    self_cache = [ops.zeros((batch, 2, max_length, heads, head_dim), dtype) for _ in range(layers)]
    cross_cache = [ops.zeros((batch, 2, encoder_length, heads, head_dim), dtype)
                   for _ in range(layers)]
    return self_cache, cross_cache


def decoder_step(backbone, encoder_output, token_ids, index, self_cache, cross_cache, first):
    """Runs the decoder on `token_ids` (starting at position `index`) with caches.

    Returns:
        `(log_probs of the last position, self_cache, cross_cache)`.
    """
    x = backbone.decoder_embeddings(token_ids, start_index=index)
    new_self, new_cross = [], []
    for i, layer in enumerate(backbone.decoder_transformer_layers):
        x, layer_self, layer_cross = layer(
            decoder_sequence=x, encoder_sequence=encoder_output,
            self_attention_cache=self_cache[i], self_attention_cache_update_index=index,
            cross_attention_cache=cross_cache[i],
            cross_attention_cache_update_index=0 if first else None,
        )
        new_self.append(layer_self)
        new_cross.append(layer_cross)
    x = backbone.decoder_layer_norm(x[:, -1:, :])
    logits = ops.cast(backbone.token_embedding(x, reverse=True)[:, 0, :], "float32")
    return ops.log_softmax(logits, axis=-1), new_self, new_cross


def generate(backbone, encoder_output, prompt, eos_id, max_new_tokens, num_beams=1,
             suppress=()):
    """Transcribes a batch: token ids after `prompt`, up to (not including) the end token.

    Args:
        backbone: a keras-hub `WhisperBackbone`.
        encoder_output: `(batch, frames, hidden)` encoder features.
        prompt: list of int. Start tokens (`<|startoftranscript|>`, ...).
        eos_id: int. End-of-text token id.
        max_new_tokens: int. Longest transcript in tokens.
        num_beams: int. 1 for greedy decoding, more for beam search.
        suppress: token ids never generated (other special tokens).

    Returns:
        A list (one per example) of lists of token ids.
    """
    batch = int(ops.shape(encoder_output)[0])
    if num_beams > 1:
        encoder_output = ops.repeat(encoder_output, num_beams, axis=0)
    rows = batch * num_beams
    max_length = len(prompt) + max_new_tokens
    self_cache, cross_cache = _empty_caches(
        backbone, rows, max_length, int(ops.shape(encoder_output)[1]), encoder_output.dtype
    )
    tokens = np.tile(np.asarray(prompt, "int32"), (rows, 1))
    scores = np.zeros((batch, num_beams), "float64")
    scores[:, 1:] = -np.inf  # all beams start equal: keep one until the first split
    done = np.zeros(rows, bool)
    step_ids, index, first = tokens, 0, True
    for _ in range(max_new_tokens):
        log_probs, self_cache, cross_cache = decoder_step(
            backbone, encoder_output, step_ids, index, self_cache, cross_cache, first)
        log_probs = np.array(ops.convert_to_numpy(log_probs), dtype="float64")
        log_probs[:, list(suppress)] = -np.inf
        log_probs[done] = -np.inf
        log_probs[done, eos_id] = 0.0  # finished rows only extend with end tokens
        index, first = index + step_ids.shape[1], False
        if num_beams == 1:
            chosen = log_probs.argmax(-1).astype("int32")
            order = np.arange(rows)
        else:
            total = (scores.reshape(-1, 1) + log_probs).reshape(batch, -1)
            best = np.argsort(-total, axis=-1)[:, :num_beams]
            scores = np.take_along_axis(total, best, axis=-1)
            vocab = log_probs.shape[-1]
            order = (np.arange(batch)[:, None] * num_beams + best // vocab).reshape(-1)
            chosen = (best % vocab).reshape(-1).astype("int32")
            self_cache = [ops.take(c, order, axis=0) for c in self_cache]
            cross_cache = [ops.take(c, order, axis=0) for c in cross_cache]
        tokens = np.concatenate([tokens[order], chosen[:, None]], axis=1)
        done = done[order] | (chosen == eos_id)
        step_ids = chosen[:, None]
        if done.all():
            break
    best_rows = np.arange(batch) * num_beams  # beams are sorted best first
    results = []
    for row in best_rows:
        ids = tokens[row, len(prompt):].tolist()
        results.append(ids[: ids.index(eos_id)] if eos_id in ids else ids)
    return results
