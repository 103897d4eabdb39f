"""Speech to text as one graph, for `ft.export`: raw waveforms in, token ids and text out.

`predict_text` decodes in Python with key/value caches. An exported model
cannot run Python, so `greedy_transcriber` writes greedy decoding as a
`tf.while_loop`: the decoder reruns on a fixed buffer of `prompt +
max_new_tokens` positions each step (its causal mask keeps later positions
out), the next token is the most likely one that is not special, and rows
stop at the end token. It is slower per token than the cached loop and
gives the same greedy transcripts.
"""

import keras
import numpy as np

from finetunekit.generation.decoding import end_id, special_ids

AUDIO_INPUTS = ("audio", "audio_length", "sample_rate")


def speech_encoder(tuner):
    """The FineTuner's raw audio inputs -> `[encoder features, their padding mask]`."""
    outputs = [tuner.backbone_outputs["features"], tuner.backbone_outputs["padding_mask"]]
    return keras.Model({n: tuner.input[n] for n in AUDIO_INPUTS}, outputs, name="speech_encoder")


def greedy_transcriber(tuner, max_new_tokens=None):
    """A function `inputs -> {"token_ids", "text"}` of greedy transcription, traceable by TF.

    Args:
        tuner: a `FineTuner` with a `SpeechToTextHead`.
        max_new_tokens: int or None. Longest transcript (the head's default).

    Returns:
        `fn(inputs, training=False)`: `inputs` a dict of `audio`,
        `audio_length`, `sample_rate`; returns `token_ids` (int32
        `(batch, max_new_tokens)`, the end token after each transcript) and
        `text` (string `(batch,)`).

    Example:
    ```python
    transcribe = greedy_transcriber(asr)
    transcribe({"audio": audio, "audio_length": lengths, "sample_rate": rates})["text"]
    ```
    """
    import tensorflow as tf

    head, kind, backbone = tuner.head, tuner.backbone_kind, tuner.backbone
    tokenizer = kind.tokenizer
    prompt = head.prompt_ids(tokenizer)
    room = kind.max_decoder_tokens - len(prompt)
    steps = min(max_new_tokens or head.max_new_tokens, room)
    eos = end_id(tokenizer)
    blocked = np.zeros(backbone.vocabulary_size, bool)
    blocked[sorted(special_ids(tokenizer, backbone.vocabulary_size))] = True
    encoder = speech_encoder(tuner)

    def step(encoded, tokens, done, index):
        encoded, encoder_mask = encoded
        mask = tf.ones_like(tokens, dtype=tf.bool)
        logits = tf.cast(kind.parts.decode(encoded, encoder_mask, tokens, mask), tf.float32)
        logits = tf.gather(logits, len(prompt) - 1 + index, axis=1)
        logits = tf.where(tf.constant(blocked)[None, :], tf.constant(-1e9, tf.float32), logits)
        chosen = tf.where(done, eos, tf.cast(tf.argmax(logits, axis=-1), tf.int32))
        column = tf.one_hot(len(prompt) + index, tf.shape(tokens)[1], dtype=tf.int32)[None, :]
        tokens = tokens * (1 - column) + chosen[:, None] * column
        return tokens, done | tf.equal(chosen, eos)

    def transcribe(inputs, training=False):
        encoded = encoder({n: inputs[n] for n in AUDIO_INPUTS}, training=False)
        batch = tf.shape(encoded[0])[0]
        tokens = tf.concat([tf.tile(tf.constant([prompt], tf.int32), [batch, 1]),
                            tf.fill([batch, steps], eos)], axis=1)
        done = tf.zeros([batch], tf.bool)

        def body(index, tokens, done):
            tokens, done = step(encoded, tokens, done, index)
            return index + 1, tokens, done

        _, tokens, _ = tf.while_loop(
            lambda index, tokens, done: (index < steps) & ~tf.reduce_all(done),
            body, (tf.constant(0), tokens, done))
        ids = tokens[:, len(prompt):]
        kept = tf.ragged.boolean_mask(ids, tf.cumsum(tf.cast(ids == eos, tf.int32), axis=1) == 0)
        text = tf.strings.strip(tokenizer.detokenize(kept))
        return {"token_ids": ids, "text": text}

    return transcribe
