"""Generation and reports of an `InstructionHead`: keras-hub's `CausalLM.generate` on token ids.

Prompts are tokenised by finetunekit exactly as in training
(`prompt_token_ids`) and handed to keras-hub's generation loop without its
preprocessor: each batch is right-padded to its longest prompt plus
`max_new_tokens`, generation stops at the end-of-turn ids, and only the new
tokens before the first stop id are detokenised.
"""

import numpy as np

from finetunekit.core.scores import Report

STRATEGIES = ("greedy", "top_k", "top_p", "random", "beam")


def make_sampler(strategy, top_k=10, top_p=0.9, temperature=1.0, num_beams=4, seed=None):
    """The keras-hub sampler of a `generate(strategy=...)` name."""
    import keras_hub

    if strategy not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {strategy!r}. Expected one of {', '.join(map(repr, STRATEGIES))}."
        )
    samplers = keras_hub.samplers
    if strategy == "greedy":
        return samplers.GreedySampler()
    if strategy == "beam":
        return samplers.BeamSampler(num_beams=int(num_beams))
    if strategy == "top_k":
        return samplers.TopKSampler(k=int(top_k), seed=seed, temperature=temperature)
    if strategy == "top_p":
        return samplers.TopPSampler(p=float(top_p), seed=seed, temperature=temperature)
    return samplers.RandomSampler(seed=seed, temperature=temperature)


def _generator(kind, sampler):
    """The kind's keras-hub generator, compiled with the sampler of `sampler` (options dict)."""
    key = tuple(sorted(sampler.items()))
    return kind.compiled_generator(key, lambda: make_sampler(**sampler))


def _check_room(kind, longest, max_new_tokens):
    limit = getattr(kind.model, "max_sequence_length", None)
    if max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1. Received: {max_new_tokens}")
    if limit is not None and longest + max_new_tokens > int(limit):
        raise ValueError(
            f"A prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the "
            f"model's {int(limit)} positions. Shorten the prompt or lower max_new_tokens."
        )


def _new_tokens(row, prompt_length, max_new_tokens, stop):
    """The generated ids of one row, up to (not including) the first stop id."""
    new = [int(t) for t in row[prompt_length : prompt_length + max_new_tokens]]
    for index, token in enumerate(new):
        if token in stop:
            return new[:index]
    return new


def _detokenize(tokenizer, rows):
    texts = [""] * len(rows)
    filled = [i for i, row in enumerate(rows) if row]
    if filled:
        out = tokenizer.detokenize([rows[i] for i in filled])
        out = np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=object).reshape(-1)
        for i, text in zip(filled, out):
            texts[i] = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return texts


def generate_answers(tuner, prompt_ids, max_new_tokens, sampler, batch_size=8):
    """Generated answers (str) to tokenised prompts.

    Args:
        tuner: a FineTuner with an `InstructionHead`.
        prompt_ids: list of int lists.
        max_new_tokens: int.
        sampler: dict of `make_sampler` options (`strategy`, `top_k`, ...).
        batch_size: int. Prompts per generation call.

    Returns:
        A list of str, one per prompt.
    """
    kind = tuner.backbone_kind
    stop = set(tuner.head.stop_token_ids(kind))
    generator = _generator(kind, sampler)
    pad = getattr(kind.tokenizer, "pad_token_id", None) or 0
    rows = []
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start : start + batch_size]
        longest = max(len(ids) for ids in chunk)
        _check_room(kind, longest, max_new_tokens)
        ids = np.full((len(chunk), longest + max_new_tokens), pad, "int32")
        mask = np.zeros(ids.shape, bool)
        for row, prompt in enumerate(chunk):
            ids[row, : len(prompt)] = prompt
            mask[row, : len(prompt)] = True
        out = generator.generate(
            {"token_ids": ids, "padding_mask": mask}, stop_token_ids=tuple(stop) or None
        )
        tokens = np.asarray(out["token_ids"])
        rows += [_new_tokens(tokens[r], len(p), max_new_tokens, stop) for r, p in enumerate(chunk)]
    return _detokenize(kind.tokenizer, rows)


def instruction_report(head, tuner, x, y, batch_size, options):
    """A `Report` of masked loss, token accuracy and perplexity, and of generated answers.

    Conversations whose last turn is the assistant's are answered from the
    turns before it (greedy) and scored against it: `exact_match` (0-1) and
    `chrf` (0-100).
    """
    from finetunekit.families.causal_lm.pipeline import read_examples
    from finetunekit.families.causal_lm.scores import chrf, exact_match

    scores = tuner.evaluate(x, y, batch_size=batch_size, return_dict=True, verbose=0)
    metrics = {name: float(value) for name, value in scores.items()}
    examples = read_examples(x, y, warn=False)
    answered = [e.messages for e in examples if e.is_conversation and e.messages[-1]["role"] == "assistant"]
    if answered:
        references = [m[-1]["content"] for m in answered]
        predictions = head.generate(
            tuner, [list(m[:-1]) for m in answered],
            max_new_tokens=int(options.get("max_new_tokens", 64)), batch_size=batch_size,
        )
        metrics["exact_match"] = exact_match(predictions, references)
        metrics["chrf"] = chrf(predictions, references)
    return Report("instruction tuning", metrics, {}, None, [], len(examples))
