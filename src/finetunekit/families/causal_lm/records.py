"""Normalise supervised fine-tuning data into conversations (or plain text).

Accepted record formats (one per dataset; detected from the keys):

* ``{"messages": [{"role": ..., "content": ...}, ...]}`` -- multi-turn chat
  with roles ``system`` (first only), ``user`` and ``assistant`` alternating;
* ``{"prompt": str, "completion": str}`` (optional ``"system"``);
* Alpaca: ``{"instruction": str, "input": str (optional), "output": str}``
  (optional ``"system"``); a non-empty input goes after the instruction,
  separated by a blank line;
* ``{"text": str}`` -- plain text for continued pre-training.

Sources: a list of dicts, a pandas DataFrame, or a ``.json`` (a list of
records), ``.jsonl``, ``.csv`` or ``.parquet`` file. A bad record raises a
`ValueError` that names the problem, the record (and file) and the fix;
suspicious but legal data gives one warning per kind, with counts.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from finetunekit.core.notices import warn_user

__all__ = [
    "Example",
    "FORMATS",
    "load_records",
    "to_examples",
    "validate_messages",
]

ROLES = ("system", "user", "assistant")

#: format name -> (required keys, optional keys)
FORMATS: dict[str, tuple[frozenset, frozenset]] = {
    "messages": (frozenset({"messages"}), frozenset()),
    "prompt_completion": (frozenset({"prompt", "completion"}), frozenset({"system"})),
    "alpaca": (frozenset({"instruction", "output"}), frozenset({"input", "system"})),
    "text": (frozenset({"text"}), frozenset()),
}

_FORMAT_HELP = (
    "expected one of: {'messages': [{'role', 'content'}, ...]}, "
    "{'prompt', 'completion'}, {'instruction', 'input' (optional), 'output'} (Alpaca) "
    "or {'text'} (continued pre-training)"
)


@dataclass(frozen=True)
class Example:
    """One training example: a conversation, or plain text.

    Attributes:
        messages: the conversation as role/content dicts, or `None` for text.
        text: the plain text (continued pre-training), or `None` for a conversation.
        source: where the record came from, for error messages
            (e.g. ``"record 3 (line 4 of train.jsonl)"``).
    """

    messages: tuple | None = None
    text: str | None = None
    source: str = field(default="", compare=False)

    @property
    def is_conversation(self) -> bool:
        """Whether this example is a conversation (else plain text)."""
        return self.messages is not None


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_records(path) -> list[dict]:
    """Read the records of a JSON, JSONL, CSV or Parquet file.

    Args:
        path: the file; the format comes from the suffix (`.json`, `.jsonl`,
            `.ndjson`, `.csv`, `.parquet`). JSON must hold a list of objects.
            In CSV a `messages` cell holds the JSON text of the list.

    Returns:
        A list of dicts, one per record.

    Raises:
        ValueError: unknown suffix, unparsable content (the message gives the
            line), or a JSON file that is not a list of objects.
        FileNotFoundError: the file does not exist.

    Example:
        >>> records = load_records("train.jsonl")  # doctest: +SKIP
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"No such data file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        records = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path.name}, line {lineno}: not valid JSON ({err.msg}). Each line of "
                        "a .jsonl file must be one JSON object."
                    ) from None
        return records
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path.name}: not valid JSON ({err.msg}, line {err.lineno})."
            ) from None
        if not isinstance(data, list):
            raise ValueError(
                f"{path.name} holds a JSON {type(data).__name__}, not a list of records. Write "
                "the records as a JSON list, or one object per line in a .jsonl file."
            )
        return data
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            records = [dict(row) for row in csv.DictReader(f)]
        for i, rec in enumerate(records):
            if isinstance(rec.get("messages"), str):
                try:
                    rec["messages"] = json.loads(rec["messages"])
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path.name}, record {i}: the 'messages' cell is not JSON ({err.msg}). "
                        "Store the message list as JSON text in CSV."
                    ) from None
        return records
    if suffix == ".parquet":
        import pandas as pd

        return _frame_records(pd.read_parquet(path))
    raise ValueError(
        f"{path.name}: unknown data file type {suffix!r}; use .json, .jsonl, .csv or .parquet."
    )


def _frame_records(frame) -> list[dict]:
    records = frame.to_dict(orient="records")
    for rec in records:
        for key, value in rec.items():
            if key == "messages" and hasattr(value, "tolist"):
                rec[key] = [dict(m) for m in value.tolist()]
    return records


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _where(index: int, origin: str | None) -> str:
    return f"record {index}" + (f" of {origin}" if origin else "")


def _type_name(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "a missing value (NaN)"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def _check_string(value, what: str, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f"{where}: {what} is {_type_name(value)}, not a string. Convert it to text "
            "(or remove the record)."
        )
    if not allow_empty and not value.strip():
        raise ValueError(f"{where}: {what} is empty. Remove the record or fill it in.")
    return value


def _check_message(message, at: str) -> tuple:
    """`(role, content)` of one message dict, or a ValueError naming the message."""
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise ValueError(
            f"{at}: a message must be a dict with 'role' and 'content'; got {message!r:.80}."
        )
    extra = set(message) - {"role", "content"}
    if extra:
        raise ValueError(
            f"{at}: unknown message keys {sorted(extra)}; only 'role' and 'content' are "
            "used. Remove them (tool calls and multimodal parts are not supported)."
        )
    role = message["role"]
    if role not in ROLES:
        raise ValueError(
            f"{at}: unknown role {role!r}; use 'system', 'user' or 'assistant' "
            "(map e.g. 'human' -> 'user', 'gpt'/'model' -> 'assistant')."
        )
    content = _check_string(message["content"], "the content", at, allow_empty=True)
    return role, content


def _check_turn_order(role: str, previous, j: int, content: str, at: str) -> None:
    """Raises when `role` cannot follow `previous` (system first; user and assistant alternate)."""
    if role == "system":
        if j != 0:
            raise ValueError(
                f"{at}: a system message may only be the first message. Move it to the "
                "front or merge it into the first one."
            )
    elif role == "user":
        if previous == "user":
            raise ValueError(
                f"{at}: two user turns in a row. Merge them into one message, or add the "
                "assistant reply between them."
            )
    else:  # assistant
        if previous in (None, "system"):
            raise ValueError(
                f"{at}: the conversation starts with an assistant turn; a user turn must "
                "come first. Add the user prompt, or drop the leading assistant message."
            )
        if previous == "assistant":
            raise ValueError(
                f"{at}: two assistant turns in a row. Merge them into one message."
            )
        if not content.strip():
            raise ValueError(
                f"{at}: the assistant response is empty. Remove the record or fill in the "
                "response; there is nothing to train on."
            )


def validate_messages(messages, where: str = "conversation") -> tuple:
    """Check a conversation's roles and contents.

    Rules: every message is a dict with a `role` in `system`/`user`/`assistant`
    and a string `content`; a system message may only come first; then user
    and assistant turns alternate, starting with user; there is at least one
    assistant turn; no assistant turn is empty.

    Args:
        messages: a list of `{"role", "content"}` dicts.
        where: how to name the conversation in error messages.

    Returns:
        The messages as a tuple of plain `{"role", "content"}` dicts.

    Raises:
        ValueError: the rule broken, the message index and the fix.

    Example:
        >>> validate_messages([{"role": "user", "content": "Hi"},
        ...                    {"role": "assistant", "content": "Hello"}])[1]["role"]
        'assistant'
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(
            f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} dicts; "
            f"got {_type_name(messages)}{' (empty)' if isinstance(messages, (list, tuple)) else ''}."
        )
    out = []
    previous = None
    for j, message in enumerate(messages):
        role, content = _check_message(message, f"{where}, message {j}")
        _check_turn_order(role, previous, j, content, f"{where}, message {j}")
        out.append({"role": role, "content": content})
        previous = role
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError(
            f"{where}: the conversation has no assistant turn, so there is nothing to train "
            "on. Add the expected response, or use {'text': ...} records for continued "
            "pre-training."
        )
    return tuple(out)


def _detect_format(record: dict, where: str) -> tuple[str, set]:
    keys = set(record)
    matches = [name for name, (required, _) in FORMATS.items() if required <= keys]
    if "messages" in matches:
        matches = ["messages"]
    if len(matches) != 1:
        if not matches:
            raise ValueError(
                f"{where}: unknown record format with keys {sorted(keys)}; {_FORMAT_HELP}. "
                "Rename the columns to one of these."
            )
        raise ValueError(
            f"{where}: the keys {sorted(keys)} match several formats {matches}; keep only the "
            "columns of one format."
        )
    name = matches[0]
    required, optional = FORMATS[name]
    return name, keys - required - optional


def _record_to_example(record, index: int, origin: str | None) -> tuple[str, Example, set]:
    where = _where(index, origin)
    if not isinstance(record, dict):
        raise ValueError(
            f"{where}: a record must be a dict (JSON object); got {_type_name(record)}."
        )
    fmt, extra = _detect_format(record, where)
    if fmt == "text":
        text = _check_string(record["text"], "'text'", where)
        return fmt, Example(text=text, source=where), extra
    if fmt == "messages":
        messages = validate_messages(record["messages"], where)
        return fmt, Example(messages=messages, source=where), extra
    system = record.get("system")
    if system is not None and not (isinstance(system, float) and math.isnan(system)):
        system = _check_string(system, "'system'", where, allow_empty=True)
    else:
        system = None
    if fmt == "prompt_completion":
        prompt = _check_string(record["prompt"], "'prompt'", where, allow_empty=True)
        response = _check_string(record["completion"], "'completion' (the response)", where)
    else:  # alpaca
        instruction = _check_string(record["instruction"], "'instruction'", where, allow_empty=True)
        extra_input = record.get("input")
        if extra_input is None or (isinstance(extra_input, float) and math.isnan(extra_input)):
            extra_input = ""
        extra_input = _check_string(extra_input, "'input'", where, allow_empty=True)
        prompt = instruction if not extra_input.strip() else f"{instruction}\n\n{extra_input}"
        response = _check_string(record["output"], "'output' (the response)", where)
    messages = []
    if system and system.strip():
        messages.append({"role": "system", "content": system})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return fmt, Example(messages=tuple(messages), source=where), extra


def _read_records(data) -> tuple:
    """`(records, origin)`: the list of records of `data` and its file name (or None)."""
    origin = None
    if isinstance(data, (str, os.PathLike)):
        origin = Path(os.fspath(data)).name
        records = load_records(data)
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):
        records = _frame_records(data)
    elif isinstance(data, (list, tuple)):
        records = list(data)
    else:
        raise ValueError(
            f"SFT data must be a list of dicts, a pandas DataFrame or a file path; got "
            f"{type(data).__name__}."
        )
    if not records:
        raise ValueError(f"No records in {origin or 'the data'}; there is nothing to train on.")
    return records, origin


def _warn_suspicious(examples, origin, ignored, empty_prompts, trailing_user) -> None:
    """One `UserWarning` per kind of suspicious data (see `to_examples`), with counts."""
    where = f" in {origin}" if origin else ""
    if ignored:
        listed = ", ".join(f"{k!r} ({n} records)" for k, n in sorted(ignored.items()))
        warn_user(f"Ignoring columns{where}: {listed}.")
    if empty_prompts:
        warn_user(
            f"{empty_prompts} of {len(examples)} conversations{where} have an empty user "
            "prompt; the model learns those responses unconditionally.",
        )
    if trailing_user:
        warn_user(
            f"{trailing_user} of {len(examples)} conversations{where} end with a user turn; "
            "that last turn is context only and is never trained on.",
        )
    keys = {json.dumps([e.messages, e.text], sort_keys=True) for e in examples}
    duplicates = len(examples) - len(keys)
    if duplicates:
        warn_user(
            f"{duplicates} of {len(examples)} records{where} are exact duplicates of an "
            "earlier record; they are weighted more in training.",
        )


def to_examples(data, *, warn: bool = True) -> list[Example]:
    """Normalise a dataset of SFT records into `Example`s.

    Args:
        data: a list of dicts, a pandas DataFrame, or a path to a `.json`,
            `.jsonl`, `.csv` or `.parquet` file.
        warn: emit one `UserWarning` per kind of suspicious data, with counts:
            extra columns that are ignored, empty prompts, conversations that
            end with a user turn (that turn is never trained on), duplicates.

    Returns:
        A list of `Example`, in the input order.

    Raises:
        ValueError: the first bad record: unknown format or keys, roles out of
            order, no assistant turn, empty response, non-string content, or a
            dataset that mixes plain text with conversations. The message names
            the record (and file) and the fix.

    Example:
        >>> ex = to_examples([{"instruction": "Add", "input": "2+2", "output": "4"}])
        >>> ex[0].messages[0]["content"]
        'Add\\n\\n2+2'
    """
    records, origin = _read_records(data)

    examples: list[Example] = []
    kinds: Counter = Counter()
    ignored: Counter = Counter()
    empty_prompts = trailing_user = 0
    first_kind = None
    for i, record in enumerate(records):
        fmt, example, extra = _record_to_example(record, i, origin)
        kind = "text" if fmt == "text" else "conversation"
        if first_kind is None:
            first_kind = (kind, fmt)
        elif kind != first_kind[0]:
            raise ValueError(
                f"{_where(i, origin)} is {fmt!r} but record 0 is {first_kind[1]!r}: a dataset "
                "cannot mix plain text (trained on everything) with conversations (trained on "
                "the responses). Split it into two datasets."
            )
        kinds[fmt] += 1
        ignored.update(extra)
        if example.is_conversation:
            if any(m["role"] == "user" and not m["content"].strip() for m in example.messages):
                empty_prompts += 1
            if example.messages[-1]["role"] == "user":
                trailing_user += 1
        examples.append(example)

    if warn:
        _warn_suspicious(examples, origin, ignored, empty_prompts, trailing_user)
    return examples
