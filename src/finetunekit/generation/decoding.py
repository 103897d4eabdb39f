"""Cached greedy and beam-search decoding for speech to text, and the tokenizers' special ids.

The encoder runs once per batch; the backbone family's decoding steps
(`AudioBackbone.decoder_steps()`: Whisper's decoder layers, or keras-hub's
`MoonshineAudioToText.call_decoder_with_cache`) keep key/value caches of the
tokens seen so far and of the encoder output, as keras-hub's seq2seq models
do. This module holds what is shared: the search over tokens.
"""

import numpy as np
from keras import ops


def is_whisper_tokenizer(tokenizer):
    return hasattr(tokenizer, "no_timestamps_token_id")


def end_id(tokenizer):
    """The end-of-transcript token id (`<|endoftext|>` for Whisper, `</s>` for Moonshine)."""
    if hasattr(tokenizer, "eos_token_id"):
        return int(tokenizer.eos_token_id)
    return int(tokenizer.end_token_id)


def prompt_ids(tokenizer, language=None):
    """Decoder start tokens: Whisper's task prompt, or Moonshine's `<s>`."""
    if not is_whisper_tokenizer(tokenizer):
        return [int(tokenizer.start_token_id)]
    ids = [tokenizer.bos_token_id]
    languages = getattr(tokenizer, "language_tokens", None)
    if languages and language:
        ids += [languages[f"<|{language}|>"], tokenizer.transcribe_token_id]
    return ids + [tokenizer.no_timestamps_token_id]


def special_ids(tokenizer, vocabulary_size):
    """Ids never written in a transcript (start, task, language, timestamp, padding/unknown)."""
    if is_whisper_tokenizer(tokenizer):
        eos = end_id(tokenizer)
        return ({tokenizer.bos_token_id, tokenizer.no_timestamps_token_id,
                 tokenizer.transcribe_token_id, tokenizer.translate_token_id}
                | set(range(eos + 1, vocabulary_size)))
    # Moonshine's vocabulary has unused ids past the tokenizer's (768 in the real models).
    return ({int(tokenizer.start_token_id), int(tokenizer.pad_token_id)}
            | set(range(tokenizer.vocabulary_size(), vocabulary_size)))


def generate(steps, encoder_output, encoder_mask, prompt, eos_id, max_new_tokens, num_beams=1,
             suppress=()):
    """Transcribes a batch: token ids after `prompt`, up to (not including) the end token.

    Args:
        steps: the backbone's decoding steps (`start`, `step`, `reorder`).
        encoder_output: `(batch, frames, hidden)` encoder features.
        encoder_mask: `(batch, frames)` bool mask of real frames.
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
        encoder_mask = ops.repeat(encoder_mask, num_beams, axis=0)
    rows = batch * num_beams
    state = steps.start(encoder_output, encoder_mask, rows, len(prompt) + max_new_tokens)
    tokens = np.tile(np.asarray(prompt, "int32"), (rows, 1))
    scores = np.zeros((batch, num_beams), "float64")
    scores[:, 1:] = -np.inf  # all beams start equal: keep one until the first split
    done = np.zeros(rows, bool)
    step_ids, index = tokens, 0
    for _ in range(max_new_tokens):
        log_probs, state = steps.step(state, step_ids, index)
        log_probs = np.array(ops.convert_to_numpy(log_probs), dtype="float64")
        log_probs[:, list(suppress)] = -np.inf
        log_probs[done] = -np.inf
        log_probs[done, eos_id] = 0.0  # finished rows only extend with end tokens
        index += step_ids.shape[1]
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
            state = steps.reorder(state, order)
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
