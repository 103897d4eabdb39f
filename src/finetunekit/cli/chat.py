"""Chat models from the shell: `fit --task chat`, `evaluate`/`predict` of them, and `chat`.

`fit --task chat` reads conversations with the causal_lm family's own record
readers (JSONL, JSON, CSV, Parquet) and trains an `fk.InstructionHead`;
`finetunekit chat MODEL` is a small loop over stdin that keeps the
conversation across turns. TensorFlow loads only when a command needs it.
"""

import json
import os
import sys

from finetunekit.cli.commands import (
    EXIT_OK,
    CLIError,
    build_finetuner,
    check_fit_options,
    check_out_path,
    check_task_options,
    evaluate_model,
    library,
    load_finetuner,
    model_argument,
    parse_weights,
    save_trained,
    task_of,
    train,
)
from finetunekit.cli.commands import (
    run_fit as run_other_fit,
)

# `fit` options with no meaning for a language model: (attribute, option, default).
NOT_FOR_CHAT = (
    ("image_size", "--image-size", None),
    ("augment", "--augment", "none"),
    ("preprocessing", "--preprocessing", "auto"),
    ("dropout", "--dropout", 0.0),
    ("on_bad_image", "--on-bad-image", "error"),
    ("decoder", "--decoder", "unet"),
    ("max_target_length", "--max-target-length", 64),
)
DEFAULT_LORA_RANK = 8


# ------------------------------------------------------------------ checks
def check_chat_options(args):
    """Image and seq2seq options given to `--task chat` fail before anything loads."""
    given = [
        option for name, option, default in NOT_FOR_CHAT if getattr(args, name, default) != default
    ]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise CLIError(
            f"{', '.join(given)} {verb} to image or seq2seq tasks; --task chat takes none."
        )
    if os.path.isdir(args.data):
        raise CLIError(
            f"--data {args.data!r} is a folder. --task chat takes a .jsonl, .json, .csv or "
            ".parquet file of conversations (messages, prompt/completion or Alpaca records)."
        )


# ------------------------------------------------------ fit and evaluate
def run_fit(args):
    """`finetunekit fit`: `--task chat` here, the other tasks in `cli.commands`."""
    if args.task != "chat":
        return run_other_fit(args)
    check_fit_options(args)
    return run_chat_fit(args)


def run_evaluate(args):
    """`finetunekit evaluate`: chat models here, the others in `cli.commands`."""
    model = load_finetuner(model_argument(args), compile=True)
    if task_of(model) != "chat":
        return evaluate_model(model, args)
    return run_chat_evaluate(model, args)


def run_chat_fit(args):
    """`finetunekit fit --task chat`: an InstructionHead on a causal language model."""
    check_task_options(args)
    check_chat_options(args)
    check_out_path(args.out)
    fk = library()
    from finetunekit.families.causal_lm.records import to_examples

    examples = to_examples(args.data, warn=False)  # the family's errors, before the model loads
    lora_rank = args.lora_rank
    if lora_rank is None and args.unfreeze == 0:
        lora_rank = DEFAULT_LORA_RANK
    head = fk.InstructionHead(train_on=args.train_on or "completion")
    model = build_finetuner(
        fk,
        args,
        head,
        parse_weights(args.weights),
        lora_rank=lora_rank,
        sequence_length=args.sequence_length,
    )
    trains = f"LoRA rank {lora_rank}" if lora_rank else f"unfreeze={args.unfreeze}"
    print(
        f"Training chat on {args.backbone}: {len(examples)} conversations, {trains}, "
        f"train on {head.train_on}, validation split {args.validation_split}",
        flush=True,
    )
    history = train(model, args.data, None, args, validation_split=args.validation_split)
    return save_trained(model, history, args)


# ---------------------------------------------------------------- evaluate
def _check_data_file(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data: no such file: {path!r}")
    if os.path.isdir(path):
        raise CLIError(f"--data {path!r} is a folder; a chat model takes a file of records.")


def run_chat_evaluate(model, args):
    """`evaluate` of a chat model: loss, token accuracy, perplexity (and with --report answers)."""
    if args.masks is not None:
        raise CLIError("--masks applies to segmentation models only.")
    _check_data_file(args.data)
    if args.report:
        report = model.evaluate(args.data, batch_size=args.batch_size, verbose=0, report=True)
        print(json.dumps(report.to_dict(), indent=2) if args.json else report)
        return EXIT_OK
    from finetunekit.families.causal_lm.records import to_examples

    count = len(to_examples(args.data, warn=False))
    results = model.evaluate(args.data, batch_size=args.batch_size, verbose=0, return_dict=True)
    results = {name: float(value) for name, value in results.items()}
    if args.json:
        print(json.dumps({"num_examples": count, **results}, indent=2))
        return EXIT_OK
    print(f"Scored {count} conversations from {args.data}")
    for name, value in results.items():
        print(f"{name}: {value:.4f}")
    return EXIT_OK


# ----------------------------------------------------------------- predict
def _prompt_of(item, where):
    """A prompt (str or message list) from one item of a prompts file."""
    if isinstance(item, str) and item.strip():
        return item
    if isinstance(item, dict) and isinstance(item.get("messages"), list):
        return item["messages"]
    if isinstance(item, dict) and isinstance(item.get("prompt"), str):
        system = item.get("system")
        user = {"role": "user", "content": item["prompt"]}
        return [{"role": "system", "content": system}, user] if system else item["prompt"]
    raise CLIError(
        f'{where}: expected a prompt string, {{"prompt": ...}} or {{"messages": [...]}} '
        f"ending with a user turn. Received: {item!r:.80}"
    )


def read_prompts(path):
    """Prompts of a .txt file (one a line) or a .json/.jsonl file (see `_prompt_of`)."""
    _check_data_file(path)
    name = os.path.basename(path)
    if path.lower().endswith(".txt"):
        with open(path, encoding="utf-8") as f:
            prompts = [line.strip() for line in f if line.strip()]
    elif path.lower().endswith((".json", ".jsonl", ".ndjson")):
        from finetunekit.families.causal_lm.records import load_records

        records = load_records(path)
        prompts = [_prompt_of(item, f"{name}, record {i}") for i, item in enumerate(records)]
    else:
        raise CLIError(f"--data {path!r}: prompts come in a .txt, .json or .jsonl file.")
    if not prompts:
        raise CLIError(f"--data {path!r} holds no prompts.")
    return prompts


def _generation_options(args):
    options = {"max_new_tokens": args.max_new_tokens or 64}
    if getattr(args, "strategy", None):
        options["strategy"] = args.strategy
    if getattr(args, "seed", None) is not None:
        options["seed"] = args.seed
    return options


def run_chat_predict(model, args):
    """`predict` of a chat model: one answer a prompt (a line each, JSON, or a --out .json)."""
    prompts = list(args.images) + (read_prompts(args.data) if args.data else [])
    if not prompts:
        raise CLIError(
            f'Give prompts: finetunekit predict {args.model} "Write a haiku about tea." '
            "(or --data prompts.txt)."
        )
    if args.out is not None and not args.out.endswith(".json"):
        raise CLIError(f"--out of a chat model is a .json file of answers. Received: {args.out!r}")
    if args.out is not None:
        check_out_path(args.out)
    answers = model.generate(prompts, batch_size=args.batch_size, **_generation_options(args))
    rows = [{"prompt": p, "answer": a} for p, a in zip(prompts, answers)]
    if args.out is not None:
        from finetunekit.core.files import atomic_write_bytes

        atomic_write_bytes(args.out, json.dumps(rows, indent=2, ensure_ascii=False).encode())
        print(f"Wrote {len(rows)} answers to {args.out}")
    elif args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for answer in answers:  # one line each: line breaks inside an answer are written \n
            print(answer.replace("\\", "\\\\").replace("\n", "\\n"))
    return EXIT_OK


# -------------------------------------------------------------------- chat
def _next_line(interactive):
    if interactive:
        print("> ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


def run_chat(args):
    """`finetunekit chat MODEL`: user lines from stdin, the model's answers on stdout."""
    model = load_finetuner(args.model, compile=False)
    task = task_of(model)
    if task != "chat":
        raise CLIError(
            f"{args.model!r} is a {task} model, not a chat model. 'finetunekit chat' talks to "
            "a model trained with 'finetunekit fit --task chat' (an InstructionHead)."
        )
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a message; an empty line, /exit or Ctrl-D ends.", file=sys.stderr)
    while True:
        line = _next_line(interactive)
        text = line.strip()
        if not text or text == "/exit":  # end of input reads as ""
            return EXIT_OK
        messages.append({"role": "user", "content": text})
        answer = model.chat(messages, **_generation_options(args))
        messages.append({"role": "assistant", "content": answer})
        print(answer, flush=True)
