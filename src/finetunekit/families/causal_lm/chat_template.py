"""Render conversations with a checkpoint's Jinja chat template, as Hugging Face does.

A chat template is a Jinja program shipped with an instruction-tuned
checkpoint (`tokenizer_config.json: chat_template`). It turns a list of
`{"role", "content"}` messages into the exact text the model saw in training.
Getting a single newline wrong changes the tokens, so this module reproduces
the rendering environment of `transformers` (`apply_chat_template`):

* a sandboxed, immutable Jinja environment (templates from the Hub are
  untrusted code) with `trim_blocks=True` and `lstrip_blocks=True`;
* the `loopcontrols` extension (`{% break %}`, `{% continue %}`);
* `raise_exception(message)`, `strftime_now(format)` as globals;
* a `tojson` filter that does *not* HTML-escape (`json.dumps`, `ensure_ascii=False`);
* the `{% generation %}...{% endgeneration %}` block, rendered as its body;
* variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`
  (and any extra keyword argument).

`render_with_assistant_spans` finds the character span of every assistant
turn by rendering prefixes of the conversation, so the loss mask is right for
any template, not only those with `{% generation %}` markers.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "RenderedConversation",
    "render_with_assistant_spans",
]

# --------------------------------------------------------------------------
# Built-in templates, for checkpoints that ship none.
# --------------------------------------------------------------------------

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{{ message['content'] | trim }}{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

# Gemma has no system role: a system message is prepended to the first user turn.
_GEMMA = (
    "{{ bos_token }}"
    "{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if not loop.first %}{{ raise_exception('A system message must come first.') }}{% endif %}"
    "{% set ns.system = message['content'] | trim + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if role == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

#: name -> (template source, default bos_token, default eos_token, default end_of_turn)
BUILTIN_TEMPLATES: dict[str, tuple[str, str, str, str]] = {
    "chatml": (_CHATML, "", "<|im_end|>", "<|im_end|>"),
    "llama3": (_LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>"),
    "gemma": (_GEMMA, "<bos>", "<eos>", "<end_of_turn>"),
}


# --------------------------------------------------------------------------
# The Jinja environment.
# --------------------------------------------------------------------------


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: renders its body unchanged.

    Hugging Face templates use the block to mark assistant text for
    `return_assistant_tokens_mask`; spans here come from prefix rendering, so
    the block only has to parse and pass its body through.
    """

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_passthrough"), [], [], body).set_lineno(
            lineno
        )

    def _passthrough(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


class _SafeNamespace(jinja2.utils.Namespace):
    """A Jinja `namespace` that refuses underscore-prefixed attribute names."""

    def __init__(*args, **kwargs):  # same calling convention as jinja2's Namespace
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for key in attrs:
            _SafeNamespace._check(key)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, key, value):
        _SafeNamespace._check(key)
        jinja2.utils.Namespace.__setitem__(self, key, value)

    @staticmethod
    def _check(key):
        if isinstance(key, str) and key.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"a chat template may not set the attribute {key!r} on a namespace"
            )


def _make_dict(*args, **kwargs):
    return dict(*args, **kwargs)


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationBlock, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = _SafeNamespace
    env.globals["dict"] = _make_dict
    return env


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


def _describe(name: str | None, source: str) -> str:
    if name:
        return f"chat template {name!r}"
    first = source.strip().splitlines()[0] if source.strip() else ""
    if len(first) > 60:
        first = first[:57] + "..."
    return f"chat template starting {first!r}"


# --------------------------------------------------------------------------
# ChatTemplate
# --------------------------------------------------------------------------


class ChatTemplate:
    """A Jinja chat template with its special tokens.

    Args:
        template: a built-in name (`"chatml"`, `"llama3"`, `"gemma"`) or the
            Jinja source of a checkpoint's template (`tokenizer_config.json`
            field `chat_template`).
        bos_token: the text of the beginning-of-sequence token, passed to the
            template as `bos_token`. Defaults to the built-in template's
            (`"<|begin_of_text|>"` for llama3, `"<bos>"` for gemma), else `""`.
        eos_token: the text of the end-of-sequence token (`eos_token`).
            Defaults to the built-in template's, else `""`.
        end_of_turn: the text that closes an assistant turn (`"<|im_end|>"`,
            `"<|eot_id|>"`, `"<end_of_turn>"`). It is trained on together with
            the assistant content, so the model learns to stop. Defaults to the
            built-in's, else to `eos_token`.
        name: a label used in error messages and `get_config`; defaults to the
            built-in name, or `None` for a custom template.

    Raises:
        ValueError: the name is unknown, or the source does not compile (the
            message names the template and the Jinja error with its line).

    Example:
        >>> t = ChatTemplate("chatml")
        >>> t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
        '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    """

    def __init__(
        self,
        template: str,
        bos_token: str | None = None,
        eos_token: str | None = None,
        end_of_turn: str | None = None,
        name: str | None = None,
    ):
        if not isinstance(template, str) or not template:
            raise ValueError(
                f"template must be a built-in name {sorted(BUILTIN_TEMPLATES)} or Jinja source "
                f"text; got {template!r}."
            )
        if template in BUILTIN_TEMPLATES:
            source, bos, eos, eot = BUILTIN_TEMPLATES[template]
            name = name or template
        else:
            if "{" not in template:
                raise ValueError(
                    f"Unknown chat template name {template!r}: the built-in templates are "
                    f"{sorted(BUILTIN_TEMPLATES)}; otherwise pass the Jinja source of the "
                    "checkpoint's template (tokenizer_config.json, field 'chat_template')."
                )
            source, bos, eos, eot = template, "", "", None
        self.source = source
        self.name = name
        self.bos_token = bos if bos_token is None else bos_token
        self.eos_token = eos if eos_token is None else eos_token
        if end_of_turn is None:
            end_of_turn = eot if eot is not None else self.eos_token
        self.end_of_turn = end_of_turn
        try:
            self._compiled = _compile(source)
        except jinja2.TemplateSyntaxError as err:
            raise ValueError(
                f"The {self.description} does not compile: {err.message} (line {err.lineno}). "
                "Fix the template source."
            ) from None

    @property
    def description(self) -> str:
        """A short human label for error messages."""
        return _describe(self.name, self.source)

    def render(self, messages, add_generation_prompt: bool = False, **kwargs) -> str:
        """Render a conversation to text.

        Args:
            messages: a list of `{"role": ..., "content": ...}` dicts.
            add_generation_prompt: append the header that starts an assistant
                turn (for generation).
            **kwargs: extra template variables (e.g. `tools`, `documents`,
                `date_string`).

        Returns:
            The rendered text.

        Raises:
            ValueError: the template failed on this conversation; the message
                names the template and the Jinja error.

        Example:
            >>> ChatTemplate("chatml").render([{"role": "user", "content": "Hi"}])
            '<|im_start|>user\\nHi<|im_end|>\\n'
        """
        variables = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        variables.update(kwargs)
        try:
            return self._compiled.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
        except jinja2.TemplateError as err:
            kind = type(err).__name__
            raise ValueError(
                f"The {self.description} failed to render a conversation of "
                f"{len(messages)} message(s) ({kind}: {err}). Check that the roles and "
                "fields the template expects are present."
            ) from None
        except (TypeError, AttributeError, KeyError, IndexError) as err:
            raise ValueError(
                f"The {self.description} failed to render a conversation of "
                f"{len(messages)} message(s) ({type(err).__name__}: {err})."
            ) from None

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serialisable.

        Returns:
            A dict that `ChatTemplate.from_config` turns back into an equal template.

        Example:
            >>> ChatTemplate.from_config(ChatTemplate("llama3").get_config()).name
            'llama3'
        """
        builtin = self.name in BUILTIN_TEMPLATES and BUILTIN_TEMPLATES[self.name][0] == self.source
        return {
            "template": self.name if builtin else self.source,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "end_of_turn": self.end_of_turn,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> ChatTemplate:
        """Rebuild a template from `get_config()`.

        Args:
            config: the dict returned by `get_config`.

        Returns:
            A `ChatTemplate`.

        Example:
            >>> ChatTemplate.from_config({"template": "gemma"}).end_of_turn
            '<end_of_turn>'
        """
        return cls(**config)

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name or 'custom'!r}, end_of_turn={self.end_of_turn!r})"


# --------------------------------------------------------------------------
# Assistant spans
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedConversation:
    """A rendered conversation and where its assistant turns are.

    Attributes:
        text: the full rendered text.
        assistant_spans: one `(start, end)` character span per assistant turn,
            in order, covering the turn's content and its end-of-turn marker
            (`text[start:end]`), but not the role header before it.
    """

    text: str
    assistant_spans: tuple[tuple[int, int], ...]

    def segments(self) -> list[tuple[str, bool]]:
        """Split `text` into `(piece, is_assistant)` pieces in order.

        Returns:
            Consecutive pieces whose concatenation is `text`; empty pieces are left out.

        Example:
            >>> RenderedConversation("ab", ((1, 2),)).segments()
            [('a', False), ('b', True)]
        """
        pieces, cursor = [], 0
        for start, end in self.assistant_spans:
            if start > cursor:
                pieces.append((self.text[cursor:start], False))
            if end > start:
                pieces.append((self.text[start:end], True))
            cursor = end
        if cursor < len(self.text):
            pieces.append((self.text[cursor:], False))
        return pieces


def _as_template(template) -> ChatTemplate:
    return template if isinstance(template, ChatTemplate) else ChatTemplate(template)


def render_with_assistant_spans(template, messages, **kwargs) -> RenderedConversation:
    """Render a conversation and locate each assistant turn in the text.

    For assistant message `i` the start is the end of
    `render(messages[:i], add_generation_prompt=True)` (moved forward to where
    the content appears, for templates without a generation prompt) and the
    end is the end of `render(messages[:i+1])`, cut just after the template's
    end-of-turn marker, so the newline a template writes between turns is not
    trained on. This works for any template whose earlier turns do not change
    when later ones are added; for the others (e.g. templates that drop the
    reasoning of earlier turns) the content is searched for in the text.

    Args:
        template: a `ChatTemplate`, or a name/source accepted by it.
        messages: the conversation (list of role/content dicts).
        **kwargs: extra template variables passed to every render.

    Returns:
        A `RenderedConversation` with the full text (rendered without a
        generation prompt) and one span per assistant message.

    Raises:
        ValueError: the template fails to render, or an assistant turn cannot
            be found in the rendered text (the template rewrites or drops it).

    Example:
        >>> r = render_with_assistant_spans("chatml", [
        ...     {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
        >>> [r.text[s:e] for s, e in r.assistant_spans]
        ['Yo<|im_end|>']
    """
    template = _as_template(template)
    messages = list(messages)
    full = template.render(messages, **kwargs)
    eot = template.end_of_turn
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        stripped = content.strip() if isinstance(content, str) else ""
        head = template.render(messages[:i], add_generation_prompt=True, **kwargs)
        start = len(head) if full.startswith(head) else _common_prefix(head, full)
        start = max(start, cursor)
        # Templates that ignore add_generation_prompt leave the role header before the content.
        if stripped and not (full.startswith(content, start) or full.startswith(stripped, start)):
            found = full.find(stripped, start)
            upto_guess = template.render(messages[: i + 1], **kwargs)
            limit = len(upto_guess) if full.startswith(upto_guess) else len(full)
            if found == -1 or found >= limit:
                raise ValueError(
                    f"The {template.description} does not write assistant message {i} "
                    "verbatim into the rendered text (it rewrites or drops it), so its "
                    "tokens cannot be located for the loss mask. Use a template that "
                    "keeps assistant content unchanged, or train on everything "
                    "(train_on='all')."
                )
            start = found
        upto = template.render(messages[: i + 1], **kwargs)
        if full.startswith(upto) and len(upto) >= start:
            end = len(upto)
            if eot:
                last = full.rfind(eot, start, end)
                if last != -1:
                    end = last + len(eot)
        else:  # the template renders this turn differently once it is not the last
            end = start + len(stripped)
            if eot:
                gap = full.find(eot, end)
                if gap != -1 and not full[end:gap].strip():
                    end = gap + len(eot)
        spans.append((start, end))
        cursor = end
    return RenderedConversation(full, tuple(spans))


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
