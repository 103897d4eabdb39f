"""SavedModel serving of an `InstructionHead`: prompt strings in, greedy answers out, one graph.

The chat template is rendered once, at export, around a placeholder user
turn (with the generation prompt): serving joins `prefix + prompt + suffix`
in the graph, tokenises it with the tokenizer's TensorFlow path (a leading
BOS marker apart, as training does), runs keras-hub's `generate_step` with
the greedy sampler and the end-of-turn stop ids, and detokenises the new
tokens before the first stop id. `generate` of the same prompts gives the
same answers (a test checks it).
"""

PLACEHOLDER = "\u2063finetunekit-prompt\u2063"

#: New tokens a served model generates per prompt (fixed in the exported graph).
SERVING_MAX_NEW_TOKENS = 64


def prompt_parts(template):
    """`(bos, prefix, suffix, strips)` of a single user turn rendered for generation.

    Args:
        template: the head's `ChatTemplate`.

    Returns:
        `bos`: the leading BOS marker ("" if none), tokenised apart;
        `prefix`/`suffix`: the rendered text before and after the user's
        prompt; `strips`: whether the template trims the prompt's whitespace.

    Raises:
        ValueError: the template does not show the user's content verbatim.
    """
    def render(content):
        return template.render([{"role": "user", "content": content}], add_generation_prompt=True)

    text = render(PLACEHOLDER)
    if text.count(PLACEHOLDER) != 1:
        raise ValueError(
            f"The {template.description} does not show a user turn's content once and verbatim, "
            "so a SavedModel cannot render prompts in the graph. Use "
            'ft.export(folder, format="keras_hub") or ft.save(...).'
        )
    prefix, suffix = text.split(PLACEHOLDER)
    strips = render(f"  {PLACEHOLDER}  ") == text
    bos = template.bos_token or ""
    if bos and prefix.startswith(bos):
        prefix = prefix[len(bos):]
    else:
        bos = ""
    return bos, prefix, suffix, strips


def serving_function(head, tuner, max_new_tokens=SERVING_MAX_NEW_TOKENS):
    """`fn({"prompts": strings}, training=False) -> {"text", "token_ids"}` for `ft.export`.

    Args:
        head: the `InstructionHead`.
        tuner: the FineTuner being exported.
        max_new_tokens: int. New tokens per prompt.

    Returns:
        The serving function: `text` a string per prompt (greedy answer up to
        the first stop token), `token_ids` int32 `(batch, max_new_tokens)`
        (the generated ids, stop ids included).
    """
    import tensorflow as tf

    from finetunekit.core._keras_compat import build_tokenizer_graph_tables
    from finetunekit.families.causal_lm.generate import _generator

    kind = tuner.backbone_kind
    tokenizer = kind.tokenizer
    build_tokenizer_graph_tables(tokenizer)
    bos, prefix, suffix, strips = prompt_parts(head.template(kind))
    bos_ids = [int(tokenizer.token_to_id(bos))] if bos else []
    stop = tuple(head.stop_token_ids(kind))
    generator = _generator(kind, {"strategy": "greedy"})
    pad = int(getattr(tokenizer, "pad_token_id", None) or 0)

    def serve(inputs, training=False):
        del training  # generation runs in inference mode
        prompts = inputs["prompts"]
        prompts = tf.strings.strip(prompts) if strips else prompts
        ids = tokenizer.tokenize(tf.strings.join([prefix, prompts, suffix]))
        if bos_ids:
            ids = tf.concat([tf.fill([ids.nrows(), 1], bos_ids[0]), ids], axis=1)
        lengths = tf.cast(ids.row_lengths(), "int32")
        token_ids = tf.pad(ids.to_tensor(default_value=pad), [[0, 0], [0, max_new_tokens]],
                           constant_values=pad)
        mask = tf.sequence_mask(lengths, tf.shape(token_ids)[1])
        out = generator.generate_step(
            {"token_ids": tf.cast(token_ids, "int32"), "padding_mask": mask},
            stop_token_ids=stop or None,
        )
        steps = lengths[:, None] + tf.range(max_new_tokens)[None]
        new = tf.gather(tf.cast(out["token_ids"], "int32"), steps, batch_dims=1)
        stopped = tf.reduce_any(tf.equal(new[..., None], tf.constant(stop or (-1,), "int32")), -1)
        keep = tf.equal(tf.cumsum(tf.cast(stopped, "int32"), axis=1), 0)
        text = tokenizer.detokenize(tf.ragged.boolean_mask(new, keep))
        return {"text": text, "token_ids": new}

    return serve
