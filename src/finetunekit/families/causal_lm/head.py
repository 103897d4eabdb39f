"""Instruction head: supervised fine-tuning of a causal language model on conversations."""

import keras
import numpy as np

from finetunekit.generation.language_model import NextTokenHead
from finetunekit.training.metrics import TokenAccuracy

TRAIN_ON = ("completion", "all")
ON_TOO_LONG = ("truncate", "drop", "error")


def _template_from(value, kind=None):
    """A `ChatTemplate` from a name, Jinja source, config dict or template; None: the checkpoint's."""
    from finetunekit.families.causal_lm.chat_template import ChatTemplate

    if isinstance(value, ChatTemplate):
        return value
    if isinstance(value, dict):
        return ChatTemplate.from_config(value)
    if value is not None:
        return ChatTemplate(value)
    source = kind.default_chat_template() if kind is not None else None
    if not source:
        return ChatTemplate("chatml")
    metadata = kind.metadata
    return ChatTemplate(
        source, bos_token=metadata.get("bos_token") or "", eos_token=metadata.get("eos_token") or "",
    )


def _as_conversation(prompt):
    """A message list from a prompt string or a message list (which must end with a user turn)."""
    if isinstance(prompt, bytes):
        prompt = prompt.decode("utf-8", "replace")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt] if isinstance(prompt, (list, tuple)) else None
    if not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise ValueError(
            "A prompt is a string or a list of {'role', 'content'} messages. "
            f"Received: {prompt!r:.80}"
        )
    if messages[-1]["role"] != "user":
        raise ValueError(
            f"A conversation to answer must end with a user turn; it ends with "
            f"{messages[-1]['role']!r}. Drop the trailing message or add the user's question."
        )
    return messages


@keras.saving.register_keras_serializable(package="finetunekit")
class InstructionHead(NextTokenHead):
    """Instruction (chat) fine-tuning of a decoder-only language model.

    Trains next-token prediction on conversations rendered with the chat
    template; the loss and the metrics count only the trained tokens (the
    assistant turns with `train_on="completion"`). `ft.generate(prompts)`
    and `ft.chat(messages)` answer with keras-hub's samplers and stop at
    the end-of-turn token; `ft.evaluate(x)` gives the masked loss, token
    accuracy and perplexity; `ft.evaluate(x, report=True)` adds exact match
    and chrF of generated answers.

    Args:
        train_on: `"completion"` (the assistant turns and their end-of-turn
            marker; every assistant turn of a multi-turn conversation) or
            `"all"` (every token). Defaults to `"completion"`.
        chat_template: None (the checkpoint's own: the GGUF file's
            `tokenizer.chat_template` or a Hugging Face folder's
            `tokenizer_config.json`, else the built-in `"chatml"`), a
            built-in name (`"chatml"`, `"llama3"`, `"gemma"`), Jinja source, or
            a `ChatTemplate`. Saved with the model.
        max_length: int or None. Longest training example in tokens.
            Defaults to the backbone's `sequence_length`.
        on_too_long: `"truncate"` (cut the prompt on the left, then the
            response on the right; warns with counts), `"drop"` or `"error"`.
        packing: bool. Pack several training examples into each row (first-fit
            decreasing), each attending only to itself with positions
            restarting at 0; `batch_size` then counts rows. Needs a keras-hub
            Llama backbone (a `.gguf` file loads one); other backbones (GPT-2,
            Gemma, ...) are refused with the reason. Evaluation and prediction
            run one example per row.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Next-token logits `(batch, tokens, vocabulary)`, float32.

    Example:
    ```python
    lm = fk.FineTuner(backbone="smollm2.gguf", head=fk.InstructionHead(), lora_rank=8)
    lm.fit("conversations.jsonl", epochs=2)
    lm.chat([{"role": "user", "content": "What is my dog's name?"}])
    ```
    """

    needs = ("lm_logits",)
    loss_reduction = "mean_with_sample_weight"
    target_layout = "conversation"
    task_methods = ("generate", "chat")
    cli_task = "chat"

    def __init__(
        self, train_on="completion", chat_template=None, max_length=None, on_too_long="truncate",
        packing=False, **kwargs,
    ):
        super().__init__(**kwargs)
        if train_on not in TRAIN_ON:
            raise ValueError(f"`train_on` must be one of {TRAIN_ON}. Received: {train_on!r}")
        if on_too_long not in ON_TOO_LONG:
            raise ValueError(f"`on_too_long` must be one of {ON_TOO_LONG}. Received: {on_too_long!r}")
        if max_length is not None and (isinstance(max_length, bool) or int(max_length) < 2):
            raise ValueError(f"`max_length` must be an int >= 2. Received: {max_length!r}")
        self.train_on = train_on
        self.on_too_long = on_too_long
        self.max_length = None if max_length is None else int(max_length)
        self.packing = bool(packing)
        self.chat_template = None if chat_template is None else _template_from(chat_template)

    def adapt_backbone(self, kind):
        """Checks that `kind` is a causal language model and fixes the chat template."""
        if getattr(kind, "name", None) != "causal_lm":
            raise ValueError(
                "An InstructionHead fine-tunes a decoder-only language model (a .gguf file, a "
                f"keras-hub CausalLM preset); a {kind.modality} backbone ({kind.name}) cannot "
                'generate. Use e.g. backbone="smollm2.gguf" or a keras-hub CausalLM preset.'
            )
        if self.packing:
            kind.enable_packing()
        self.template(kind)
        return kind

    def template(self, kind=None):
        """The `ChatTemplate` (resolved from the checkpoint on first use)."""
        if self.chat_template is None:
            self.chat_template = _template_from(None, kind)
        return self.chat_template

    def default_metrics(self):
        from finetunekit.families.causal_lm.scores import Perplexity

        return [TokenAccuracy(), Perplexity()]

    def encode_targets(self, y, class_names=None):
        """Checks responses: non-empty strings. Returns `(texts, None)`."""
        texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in list(y)]
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(
                f"{len(bad)} response(s) are empty or not strings (rows {bad[:5]}); an "
                "InstructionHead learns to write each response. Fill them in or drop them."
            )
        return texts, None

    def decode(self, outputs, class_names=None, context=None):
        """Greedy next tokens of teacher-forced outputs (use `ft.generate` to generate)."""
        return np.argmax(np.asarray(outputs), axis=-1)

    def stop_token_ids(self, kind):
        """Ids that end an answer: the template's end-of-turn marker and the end token."""
        tokenizer = kind.tokenizer
        ids = []
        marker = self.template(kind).end_of_turn
        if marker:
            encoded = tokenizer.tokenize(marker)
            encoded = np.asarray(encoded).reshape(-1).tolist()
            if len(encoded) == 1:
                ids.append(int(encoded[0]))
        end = getattr(tokenizer, "end_token_id", None)
        if end is not None:
            ids.append(int(end))
        return tuple(dict.fromkeys(ids))

    def prompt_ids(self, tuner, prompts):
        """Token ids of generation prompts (strings or message lists), as in training."""
        from finetunekit.families.causal_lm.tokenization import prompt_token_ids

        conversations = [_as_conversation(p) for p in prompts]
        kind = tuner.backbone_kind
        return prompt_token_ids(kind.tokenizer, self.template(kind), conversations)

    def generate(
        self, tuner, prompts, max_new_tokens=64, strategy="greedy", top_k=10, top_p=0.9,
        temperature=1.0, num_beams=4, seed=None, batch_size=None,
    ):
        """Answers to prompts: `ft.generate(["Write a haiku about tea."], max_new_tokens=64)`.

        Args:
            tuner: the FineTuner.
            prompts: a string, a message list, or a list of strings / message
                lists (each ending with a user turn).
            max_new_tokens: int. Longest answer in tokens. Defaults to 64.
            strategy: `"greedy"`, `"top_k"`, `"top_p"`, `"random"` or `"beam"`
                (keras-hub samplers).
            top_k, top_p, temperature, num_beams, seed: sampler options.
            batch_size: int. Prompts generated together. Defaults to 8.

        Returns:
            A list of str (one str for a single string or message list).
        """
        from finetunekit.families.causal_lm.generate import generate_answers

        single = isinstance(prompts, (str, bytes)) or (
            isinstance(prompts, (list, tuple)) and prompts and isinstance(prompts[0], dict)
        )
        prompts = [prompts] if single else list(prompts)
        sampler = dict(strategy=strategy, top_k=top_k, top_p=top_p, temperature=temperature,
                       num_beams=num_beams, seed=seed)
        answers = generate_answers(
            tuner, self.prompt_ids(tuner, prompts), int(max_new_tokens), sampler, batch_size or 8,
        )
        return answers[0] if single else answers

    def chat(self, tuner, messages, max_new_tokens=64, strategy="greedy", **options):
        """The assistant's next turn: `ft.chat([{"role": "user", "content": "Hi"}])`.

        Args:
            tuner: the FineTuner.
            messages: one conversation (a list of role/content dicts ending
                with a user turn), or a list of conversations.
            max_new_tokens, strategy, **options: as for `generate`.

        Returns:
            str (a list of str for a list of conversations).
        """
        return self.generate(tuner, messages, max_new_tokens, strategy, **options)

    #: New tokens per prompt of a SavedModel export (`ft.export(folder)`); set before exporting.
    serving_max_new_tokens = 64

    def serving_function(self, tuner):
        """Greedy answers in one graph (`ft.export`): prompt strings in, text out.

        Returns:
            `fn({"prompts": strings}, training=False) -> {"text": string (batch,),
            "token_ids": int32 (batch, serving_max_new_tokens)}`.
        """
        from finetunekit.families.causal_lm.serving import serving_function

        return serving_function(self, tuner, int(self.serving_max_new_tokens))

    def serving_resources(self, tuner):
        """The keras-hub generator and the tokenizer (its lookup tables) for the SavedModel."""
        from finetunekit.families.causal_lm.generate import _generator

        kind = tuner.backbone_kind
        if not kind.tokenizer.built:  # a layer must be built to be tracked; building twice raises
            kind.tokenizer.build(None)
        return [_generator(kind, {"strategy": "greedy"}), kind.tokenizer]

    def make_report(self, tuner, x, y=None, batch_size=None, **options):
        """Masked loss and perplexity; exact match and chrF of answers to the last assistant turns."""
        from finetunekit.families.causal_lm.generate import instruction_report

        return instruction_report(self, tuner, x, y, batch_size, options)

    def get_config(self):
        return {
            **super().get_config(), "train_on": self.train_on,
            "chat_template": None if self.chat_template is None else self.chat_template.get_config(),
            "max_length": self.max_length, "on_too_long": self.on_too_long,
            "packing": self.packing,
        }
