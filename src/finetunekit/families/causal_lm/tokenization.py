"""Turn conversations into token ids and a loss mask, with a truncation policy.

The rendered conversation is cut at the character spans of the assistant
turns (see `render_with_assistant_spans`) and each piece is tokenised on its
own, so the boundary between "context" and "trained" tokens is exact for any
tokenizer: no character-to-token offset mapping is needed.

The loss mask is aligned with `token_ids`: `loss_mask[t] == 1` means token
`t` is a target. A causal LM predicts token `t` from tokens `< t`, so for
inputs `token_ids[:-1]` the labels are `token_ids[1:]` and the sample weights
`loss_mask[1:]` (`shift_for_causal_lm` does this).

Long examples keep their response: the prompt is cut from the left first
(keeping a leading BOS token), then the response from the right; an example
with no room left for a single response token is dropped (or raises).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from finetunekit.core.notices import warn_user

from .chat_template import ChatTemplate, render_with_assistant_spans

__all__ = [
    "TokenizedExample",
    "TruncationReport",
    "encode_texts",
    "pad_examples",
    "prompt_token_ids",
    "shift_for_causal_lm",
    "tokenize_examples",
]

TRAIN_ON = ("completion", "all")
ON_TOO_LONG = ("truncate", "drop", "error")


@dataclass(frozen=True)
class TokenizedExample:
    """One tokenised example.

    Attributes:
        token_ids: int32 array `(n,)`.
        loss_mask: int32 array `(n,)`, 1 where the token is a training target.
        source: where the example came from (for messages).
        index: int. The example's position in the input of
            `tokenize_examples` (examples may be dropped), or -1.
    """

    token_ids: np.ndarray
    loss_mask: np.ndarray
    source: str = ""
    index: int = -1

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


@dataclass
class TruncationReport:
    """Counts of what `tokenize_examples` cut or dropped.

    Attributes:
        examples: examples seen.
        kept: examples returned.
        prompt_truncated: examples whose prompt was cut on the left.
        prompt_tokens_cut: tokens cut from prompts (including any earlier
            assistant turns of a multi-turn conversation).
        earlier_turn_tokens_cut: of those, trained tokens of earlier assistant turns.
        response_truncated: examples whose last response was cut on the right
            (or plain-text examples cut on the right).
        response_tokens_cut: trained tokens cut from the end.
        dropped_too_long: examples dropped because `on_too_long="drop"`.
        dropped_no_room: examples dropped because not one response token fit.
    """

    examples: int = 0
    kept: int = 0
    prompt_truncated: int = 0
    prompt_tokens_cut: int = 0
    earlier_turn_tokens_cut: int = 0
    response_truncated: int = 0
    response_tokens_cut: int = 0
    dropped_too_long: int = 0
    dropped_no_room: int = 0
    longest: int = field(default=0)

    def as_dict(self) -> dict:
        """The counts as a plain dict.

        Returns:
            `{field name: count}`.

        Example:
            >>> TruncationReport(examples=2, kept=2).as_dict()["kept"]
            2
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def message(self, sequence_length: int | None = None) -> str | None:
        """A one-paragraph summary of the cuts, or `None` if nothing was cut.

        Args:
            sequence_length: the limit, to quote in the text.

        Returns:
            The summary, or `None`.

        Example:
            >>> TruncationReport(examples=1, kept=1).message() is None
            True
        """
        parts = []
        if self.prompt_truncated:
            parts.append(
                f"{self.prompt_truncated} prompts cut on the left ({self.prompt_tokens_cut} tokens"
                + (
                    f", {self.earlier_turn_tokens_cut} of them from earlier assistant turns"
                    if self.earlier_turn_tokens_cut
                    else ""
                )
                + ")"
            )
        if self.response_truncated:
            parts.append(
                f"{self.response_truncated} responses cut on the right "
                f"({self.response_tokens_cut} trained tokens)"
            )
        if self.dropped_too_long:
            parts.append(f"{self.dropped_too_long} examples dropped as too long")
        if self.dropped_no_room:
            parts.append(f"{self.dropped_no_room} examples dropped with no room for the response")
        if not parts:
            return None
        limit = f" (sequence_length={sequence_length}, longest example {self.longest} tokens)"
        return (
            f"Of {self.examples} examples{limit if sequence_length else ''}: "
            + "; ".join(parts)
            + ". Raise sequence_length or shorten the data to keep them whole."
        )

    def warn(self, sequence_length: int | None = None) -> None:
        """Emit `message()` as a `UserWarning` if anything was cut.

        Args:
            sequence_length: the limit, to quote in the text.

        Example:
            >>> TruncationReport().warn()
        """
        text = self.message(sequence_length)
        if text:
            warn_user(text)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def _to_lists(output) -> list[list[int]]:
    if hasattr(output, "to_list"):
        output = output.to_list()
    elif hasattr(output, "numpy"):
        output = output.numpy()
    if isinstance(output, np.ndarray):
        output = output.tolist()
    return [[int(t) for t in row] for row in output]


def _squash(text: str) -> str:
    return "".join(text.split())


def encode_texts(tokenizer, texts, check: bool = True, what: str = "text") -> list[list[int]]:
    """Tokenise several strings with a keras-hub tokenizer, checking the ids.

    Args:
        tokenizer: a `keras_hub.tokenizers.Tokenizer` (integer output, no
            `sequence_length` padding).
        texts: a list of strings.
        check: verify every id is in `[0, vocabulary_size)` and not the unknown
            token, and that detokenising gives back the text (ignoring
            whitespace), so characters the vocabulary lacks are caught.
        what: how to name the strings in error messages (e.g. the template).

    Returns:
        One list of ids per string (an empty string gives `[]`).

    Raises:
        ValueError: the tokenizer produced invalid or unknown ids, or lost
            characters; the message quotes the text.

    Example:
        >>> encode_texts(tokenizer, ["Hello", ""])  # doctest: +SKIP
        [[15496], []]
    """
    texts = list(texts)
    if not texts:
        return []
    non_empty = [t for t in texts if t]
    encoded = iter(_to_lists(tokenizer.tokenize(non_empty)) if non_empty else [])
    out = [next(encoded) if t else [] for t in texts]
    if not check:
        return out
    vocab_size = int(tokenizer.vocabulary_size())
    unk = getattr(tokenizer, "unk_token_id", None)
    for text, ids in zip(texts, out):
        bad = [i for i in ids if i < 0 or i >= vocab_size or (unk is not None and i == unk)]
        if bad:
            raise ValueError(
                f"The tokenizer cannot encode part of the {what}: {text[:80]!r} gave "
                f"unknown/invalid ids {sorted(set(bad))[:5]} (vocabulary size {vocab_size}). "
                "Use the tokenizer that belongs to the checkpoint, or a template written "
                "for it."
            )
    flat = [ids for ids in out if ids]
    if flat:
        decoded = tokenizer.detokenize(flat)
        if hasattr(decoded, "numpy"):
            decoded = decoded.numpy()
        decoded = [
            d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in decoded
        ]
        for text, back in zip([t for t in texts if t], decoded):
            if _squash(back) != _squash(text):
                raise ValueError(
                    f"The tokenizer cannot encode the {what} faithfully: {text[:80]!r} decodes "
                    f"back as {back[:80]!r} (characters missing from the vocabulary are "
                    "dropped). Use the tokenizer that belongs to the checkpoint, or a template "
                    "written for it."
                )
    return out


def _check_markers(tokenizer, template: ChatTemplate, sample_text: str) -> int | None:
    """Each special marker in the text must be one token. Returns the BOS length."""
    markers = {
        "bos_token": template.bos_token,
        "eos_token": template.eos_token,
        "end_of_turn": template.end_of_turn,
    }
    present = {k: v for k, v in markers.items() if v and v in sample_text}
    if not present:
        return None
    encoded = encode_texts(tokenizer, list(present.values()), check=False)
    for (key, marker), ids in zip(present.items(), encoded):
        if len(ids) != 1:
            raise ValueError(
                f"The tokenizer splits the {template.description}'s {key} {marker!r} into "
                f"{len(ids)} tokens {ids}; it must be one special token, or the model never "
                "learns to stop. Declare it as a special (unsplittable) token of the "
                "tokenizer, or pass the right marker to ChatTemplate."
            )
    return 1 if "bos_token" in present else None


# --------------------------------------------------------------------------
# Tokenising examples
# --------------------------------------------------------------------------


def _pieces(example, template: ChatTemplate | None, train_on: str):
    """(list of (text, is_assistant), is_conversation); plain text counts as assistant text."""
    messages = getattr(example, "messages", None)
    text = getattr(example, "text", None)
    if isinstance(example, dict):
        messages, text = example.get("messages"), example.get("text")
    elif isinstance(example, (list, tuple)):
        messages = example
    elif isinstance(example, str):
        text = example
    if messages is None:
        if not isinstance(text, str):
            raise ValueError(f"Not an example: {example!r:.80}; expected messages or text.")
        return [(text, True)], False
    if template is None:
        raise ValueError("Tokenising conversations needs a chat template.")
    rendered = render_with_assistant_spans(template, list(messages))
    return _split_bos(rendered.segments(), template), True


def _split_bos(segments, template: ChatTemplate):
    """A leading BOS marker as a segment of its own (it is tokenised apart, never trained on)."""
    if template.bos_token and segments and segments[0][0].startswith(template.bos_token):
        first, trainable = segments[0]
        rest = first[len(template.bos_token) :]
        segments = (
            [(template.bos_token, False)] + ([(rest, trainable)] if rest else []) + segments[1:]
        )
    return segments


def prompt_token_ids(tokenizer, template, conversations, check_encoding: bool = True):
    """Token ids of generation prompts, cut and tokenised exactly as in training.

    Each conversation (ending with a user turn) is rendered with the
    template's generation prompt; the text is split at the same places as a
    training example's (the BOS marker, each earlier assistant turn), so the
    ids equal the prompt part of the tokenised training example.

    Args:
        tokenizer: a keras-hub tokenizer.
        template: a `ChatTemplate` or a name/source for it.
        conversations: a list of message lists.
        check_encoding: see `encode_texts`.

    Returns:
        A list of int lists, one per conversation.

    Example:
        >>> prompt_token_ids(tokenizer, "chatml", [[{"role": "user", "content": "Hi"}]])  # doctest: +SKIP
        [[1, 87, 4, ...]]
    """
    from .chat_template import RenderedConversation

    if not isinstance(template, ChatTemplate):
        template = ChatTemplate(template)
    pieces = []
    for messages in conversations:
        rendered = render_with_assistant_spans(template, list(messages))
        text = template.render(list(messages), add_generation_prompt=True)
        spans = rendered.assistant_spans if text.startswith(rendered.text) else ()
        segments = _split_bos(RenderedConversation(text, spans).segments(), template)
        pieces.append([piece for piece, _ in segments])
    flat = [piece for segments in pieces for piece in segments]
    encoded = iter(encode_texts(tokenizer, flat, check=check_encoding, what=template.description))
    return [[i for _ in segments for i in next(encoded)] for segments in pieces]


def tokenize_examples(
    examples,
    tokenizer,
    template=None,
    sequence_length: int | None = None,
    train_on: str = "completion",
    on_too_long: str = "truncate",
    min_prompt_tokens: int = 1,
    check_encoding: bool = True,
    batch_size: int = 512,
):
    """Tokenise conversations (or plain texts) into ids and loss masks.

    Args:
        examples: `Example`s (from `to_examples`), message lists, or strings
            (plain text).
        tokenizer: a `keras_hub.tokenizers.Tokenizer` whose special tokens
            include the template's markers.
        template: a `ChatTemplate` or name/source for it; required for
            conversations.
        sequence_length: the maximum length in tokens, or `None` for no limit.
        train_on: `"completion"` trains only on assistant content and its
            end-of-turn marker (every assistant turn of a multi-turn
            conversation); `"all"` trains on every token. Plain text is always
            trained on entirely.
        on_too_long: for an example longer than `sequence_length`:
            `"truncate"` cuts the prompt on the left (keeping a leading BOS and
            at least `min_prompt_tokens`), then the last response on the right;
            `"drop"` drops it; `"error"` raises.
        min_prompt_tokens: prompt tokens that left-truncation keeps before the
            last response.
        check_encoding: check that the tokenizer encodes the text faithfully
            (see `encode_texts`).
        batch_size: examples tokenised per tokenizer call.

    Returns:
        `(tokenized, report)`: the `TokenizedExample`s kept, in order (each
        with its input `index`, so per-example data such as weights can follow
        the examples kept), and a `TruncationReport` with counts of what was cut or dropped (call
        `report.warn(sequence_length)` to tell the user).

    Raises:
        ValueError: unknown `train_on`/`on_too_long`; a too-long example with
            `on_too_long="error"` or with no room for any response token; a
            template failure; a tokenizer that cannot encode the text or splits
            a special marker.

    Example:
        >>> tokenized, report = tokenize_examples(
        ...     to_examples(records), tokenizer, "chatml", sequence_length=512
        ... )  # doctest: +SKIP
        >>> report.warn(512)  # doctest: +SKIP
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {TRAIN_ON}; got {train_on!r}.")
    if on_too_long not in ON_TOO_LONG:
        raise ValueError(f"on_too_long must be one of {ON_TOO_LONG}; got {on_too_long!r}.")
    if sequence_length is not None and sequence_length < 2:
        raise ValueError(f"sequence_length must be at least 2; got {sequence_length}.")
    if template is not None and not isinstance(template, ChatTemplate):
        template = ChatTemplate(template)
    what = template.description if template is not None else "text"

    examples = list(examples)
    report = TruncationReport(examples=len(examples))
    out: list[TokenizedExample] = []
    bos_len = None
    markers_checked = False
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin : begin + batch_size]
        pieces = [_pieces(ex, template, train_on) for ex in chunk]
        if not markers_checked and template is not None:
            sample = next(("".join(p for p, _ in segs) for segs, conv in pieces if conv), None)
            if sample is not None:
                bos_len = _check_markers(tokenizer, template, sample)
                markers_checked = True
        flat = [text for segs, _ in pieces for text, _ in segs]
        encoded = iter(encode_texts(tokenizer, flat, check=check_encoding, what=what))
        for offset, (example, (segs, is_conv)) in enumerate(zip(chunk, pieces)):
            source = getattr(example, "source", "") or f"example {begin + offset}"
            ids, mask, assistant, response_start = _assemble(segs, encoded, train_on)
            report.longest = max(report.longest, len(ids))
            result = _fit(
                ids,
                mask,
                assistant,
                response_start if is_conv else None,
                (bos_len or 0) if is_conv else 0,
                sequence_length,
                on_too_long,
                min_prompt_tokens,
                source,
                report,
            )
            if result is not None:
                out.append(TokenizedExample(result[0], result[1], source, begin + offset))
    report.kept = len(out)
    return out, report


def _assemble(segs, encoded, train_on):
    """`(ids, mask, assistant, response_start)` of one example's encoded segments."""
    ids: list[int] = []
    assistant: list[int] = []
    response_start = 0
    for _text, is_assistant in segs:
        seg_ids = next(encoded)
        if is_assistant and seg_ids:
            response_start = len(ids)
        ids += seg_ids
        assistant += [int(is_assistant)] * len(seg_ids)
    mask = assistant if train_on == "completion" else [1] * len(ids)
    return ids, mask, assistant, response_start


def _fit(
    ids, mask, assistant, response_start, front, limit, on_too_long, min_prompt, source, report
):
    ids = np.asarray(ids, dtype="int32")
    mask = np.asarray(mask, dtype="int32")
    assistant = np.asarray(assistant, dtype="int32")
    total = len(ids)
    if limit is None or total <= limit:
        return ids, mask
    if on_too_long == "error":
        raise ValueError(
            f"{source} is {total} tokens, longer than sequence_length={limit}. Raise "
            "sequence_length, shorten the example, or pass on_too_long='truncate' or 'drop'."
        )
    if on_too_long == "drop":
        report.dropped_too_long += 1
        return None
    excess = total - limit
    cut_left = 0
    if response_start is not None:
        front = min(front, response_start)
        prompt_len = response_start - front
        cut_left = min(excess, max(0, prompt_len - min_prompt))
        excess -= cut_left
        tail_start = response_start
    else:
        tail_start = 0
    if excess > 0 and not assistant[tail_start : total - excess].any():
        report.dropped_no_room += 1
        return None
    if cut_left:
        report.prompt_truncated += 1
        report.prompt_tokens_cut += cut_left
        report.earlier_turn_tokens_cut += int(assistant[front : front + cut_left].sum())
    if excess > 0:
        report.response_truncated += 1
        report.response_tokens_cut += int(assistant[total - excess :].sum())
    keep = np.concatenate([np.arange(front), np.arange(front + cut_left, total - excess)])
    return ids[keep], mask[keep]


# --------------------------------------------------------------------------
# Batching helpers
# --------------------------------------------------------------------------


def pad_examples(examples, sequence_length: int | None = None, pad_id: int = 0) -> dict:
    """Right-pad tokenised examples into dense arrays.

    Args:
        examples: `TokenizedExample`s.
        sequence_length: the row length; defaults to the longest example.
        pad_id: the id written into padding.

    Returns:
        `{"token_ids", "loss_mask", "padding_mask"}`, int32 arrays of shape
        `(len(examples), sequence_length)`; `loss_mask` and `padding_mask` are
        0 on padding.

    Raises:
        ValueError: an example is longer than `sequence_length`.

    Example:
        >>> batch = pad_examples(tokenized, 128)  # doctest: +SKIP
        >>> batch["token_ids"].shape  # doctest: +SKIP
        (32, 128)
    """
    examples = list(examples)
    length = sequence_length or max((len(e) for e in examples), default=1)
    ids = np.full((len(examples), length), pad_id, dtype="int32")
    loss = np.zeros((len(examples), length), dtype="int32")
    pad = np.zeros((len(examples), length), dtype="int32")
    for row, ex in enumerate(examples):
        n = len(ex)
        if n > length:
            raise ValueError(
                f"{ex.source or f'example {row}'} has {n} tokens, more than sequence_length="
                f"{length}; tokenise with the same sequence_length."
            )
        ids[row, :n] = ex.token_ids
        loss[row, :n] = ex.loss_mask
        pad[row, :n] = 1
    return {"token_ids": ids, "loss_mask": loss, "padding_mask": pad}


def shift_for_causal_lm(batch: dict):
    """Turn a padded or packed batch into `(x, y, sample_weight)` for next-token loss.

    Args:
        batch: a dict with `token_ids` and `loss_mask` (and optionally
            `padding_mask`, `segment_ids`, `position_ids`), arrays `(B, L)`.

    Returns:
        `x`: the inputs without the last position (every array in `batch`
        except `loss_mask`, cut to `L - 1`); `y`: `token_ids[:, 1:]`;
        `sample_weight`: `loss_mask[:, 1:]`, so a token is a target exactly
        where its mask is 1. For packed batches a target whose segment differs
        from its input's (the first token of each packed example) gets weight 0.

    Example:
        >>> x, y, w = shift_for_causal_lm(pad_examples(tokenized))  # doctest: +SKIP
    """
    x = {k: np.asarray(v)[:, :-1] for k, v in batch.items() if k != "loss_mask"}
    y = np.asarray(batch["token_ids"])[:, 1:]
    weight = np.asarray(batch["loss_mask"])[:, 1:].astype("float32")
    if "segment_ids" in batch:
        seg = np.asarray(batch["segment_ids"])
        weight = weight * (seg[:, 1:] == seg[:, :-1])
    return x, y, weight
