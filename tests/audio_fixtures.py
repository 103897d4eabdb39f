"""Tiny random Whisper and Moonshine models, tiny tokenizers and generated tones for the audio tests."""

import functools
import os

import numpy as np

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SPECIAL = ("<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>", "<|translate|>",
           "<|transcribe|>")
WORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]


def tiny_tokenizer():
    """A byte-pair tokenizer with single letters, the space mark and a few merges."""
    import keras_hub

    vocab = {c: i for i, c in enumerate(list(LETTERS) + ["Ġ"])}
    merges = []
    for word in WORDS:
        token = "Ġ" + word[0]
        if token not in vocab:
            merges.append(f"Ġ {word[0]}")
            vocab[token] = len(vocab)
    special = {token: len(vocab) + i for i, token in enumerate(SPECIAL)}
    return keras_hub.models.WhisperTokenizer(vocabulary=vocab, merges=merges, special_tokens=special)


def tiny_whisper(num_layers=2, vocabulary_size=48, max_seconds=2):
    """A 2-layer Whisper with hidden size 8 taking clips of up to `max_seconds`."""
    import keras_hub

    return keras_hub.models.WhisperBackbone(
        vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_encoder_sequence_length=max_seconds * 100,
        max_decoder_sequence_length=16,
    )


def tone(frequency, seconds=0.3, rate=16000, noise=0.02, seed=0):
    """A sine tone with a little white noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t) + noise * rng.normal(size=t.shape)).astype(
        "float32"
    )


def write_wav(path, clip, rate=16000):
    """Writes a float clip (samples,) or (samples, channels) as 16-bit PCM WAV."""
    import tensorflow as tf

    clip = np.asarray(clip, "float32")
    clip = clip[:, None] if clip.ndim == 1 else clip
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.audio.encode_wav(clip, rate).numpy())
    return path


def tone_files(folder, n=8, rate=16000, vary=True):
    """`n` WAV files of two tone classes (low / high); returns (paths, labels).

    With `vary`, clips are 0.2, 0.25 or 0.3 s long (padding per batch is
    exercised); without, all are 0.2 s (fewer traced shapes, faster tests).
    """
    paths, labels = [], []
    for i in range(n):
        label = i % 2
        clip = tone(300 if label == 0 else 2000, seconds=0.2 + 0.05 * (i % 3) * vary, rate=rate, seed=i)
        paths.append(write_wav(os.path.join(folder, f"clip{i}.wav"), clip, rate))
        labels.append(label)
    return paths, labels


@functools.cache
def _moonshine_proto():
    import io

    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(WORDS * 4), model_writer=proto, model_type="char",
        vocab_size=len(set("".join(WORDS))) + 4, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=1.0, minloglevel=2,
    )
    return proto.getvalue()


def tiny_moonshine_tokenizer():
    """A SentencePiece (character) `MoonshineTokenizer` trained here on the test words."""
    import keras_hub

    return keras_hub.models.MoonshineTokenizer(proto=_moonshine_proto())


def tiny_moonshine(vocabulary_size=32, encoder_layers=1, decoder_layers=1):
    """A Moonshine with hidden size 16 and one encoder and one decoder layer."""
    import keras_hub

    return keras_hub.models.MoonshineBackbone(
        vocabulary_size=vocabulary_size, filter_dim=16, encoder_num_layers=encoder_layers,
        decoder_num_layers=decoder_layers, hidden_dim=16, intermediate_dim=32,
        encoder_num_heads=2, decoder_num_heads=2, feedforward_expansion_factor=1,
        max_position_embeddings=16,
    )
