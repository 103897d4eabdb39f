"""English -> Spanish translation with a keras-hub BART in a few lines of finetunekit.

`--backbone` is a keras-hub Seq2SeqLM preset (`bart_base_en`), an `hf://`
handle or a local folder; `--pairs` a CSV/TSV/JSONL file with `source` and
`target` columns (the references of `benchmarks/seq2seq.py` are made by the
rule-based translator apertium, i.e. machine-made).

`--smoke` never needs a network or a file: it builds a tiny randomly
initialised BART with a vocabulary made from a few sentences and trains it
briefly on them, so it checks that the code runs, not that it translates.

    python examples/translation.py --smoke
    python examples/translation.py --backbone bart_base_en --pairs pairs.tsv --epochs 3

Extras (checked at start, before any training): sacreBLEU, for the BLEU and chrF
scores

    pip install "finetunekit[seq2seq]"
"""

import argparse
import os
import sys
import tempfile

from _extras import check_extras  # noqa: E402  (examples/_extras.py, beside this script)

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {"sacrebleu": '"finetunekit[seq2seq]"'}


PAIRS = [
    ("the cat sat", "el gato se sentó"),
    ("the dog ran", "el perro corrió"),
    ("a red cat", "un gato rojo"),
    ("a big dog", "un perro grande"),
]


def tiny_random_bart(pairs, length=16):
    """A 1-layer keras-hub BART with random weights and a BPE vocabulary of the pairs' words."""
    import keras_hub
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    byte_chars = {b[0]: c for b, c in zip(*bytes_to_unicode(), strict=True)}  # byte alphabet
    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for char in byte_chars.values():
        vocabulary.setdefault(char, len(vocabulary))
    merges = []
    words = sorted({w for pair in pairs for text in pair for w in text.split()})
    for word in words:
        for piece in (" " + word, word):
            piece = "".join(byte_chars[b] for b in piece.encode("utf-8"))
            current = piece[0]
            for char in piece[1:]:
                if f"{current} {char}" not in merges:
                    merges.append(f"{current} {char}")
                current += char
                vocabulary.setdefault(current, len(vocabulary))
    tokenizer = keras_hub.models.BartTokenizer(vocabulary=vocabulary, merges=merges)
    preprocessor = keras_hub.models.BartSeq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=length, decoder_sequence_length=length
    )
    backbone = keras_hub.models.BartBackbone(
        vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    )
    return backbone, preprocessor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", help="keras-hub Seq2SeqLM preset, hf:// handle or folder")
    parser.add_argument("--pairs", help="CSV/TSV/JSONL file of source/target pairs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny offline run for CI")
    args = parser.parse_args(argv)
    if not args.smoke and not (args.backbone and args.pairs):
        parser.error("pass --backbone and --pairs, or --smoke")
    check_extras(EXTRAS, __file__)

    import finetunekit as fk

    if args.smoke:
        backbone, preprocessor = tiny_random_bart(PAIRS)
        options = {"backbone": backbone, "preprocessor": preprocessor, "unfreeze": "all"}
        sources, targets = [s for s, _ in PAIRS], [t for _, t in PAIRS]
        epochs = 2
    else:
        options = {"backbone": args.backbone, "lora_rank": 8}
        sources, targets = fk.data.read_pairs(args.pairs)
        epochs = args.epochs
    mt = fk.FineTuner(head=fk.Seq2SeqHead(max_target_length=24), **options)
    mt.fit(sources, targets, epochs=epochs, batch_size=8, verbose=0)
    print("greedy:", mt.predict_text(sources[:2]))
    print("beam:", mt.predict_text(sources[:2], strategy="beam", num_beams=2))
    report = mt.evaluate(sources, targets, report=True)
    print(f"BLEU {report.metrics['bleu']:.1f}  chrF {report.metrics['chrf']:.1f} (training pairs)")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mt.keras")
        mt.save(path)
        assert fk.load(path).predict_text(sources[:2]) == mt.predict_text(sources[:2])
    if args.smoke:
        print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
