"""Chat templates: rendering as transformers does, and assistant spans."""

import pytest

from finetunekit.families.causal_lm.chat_template import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    RenderedConversation,
    render_with_assistant_spans,
)

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <b> & bye"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


def test_chatml_renders_the_exact_string():
    text = ChatTemplate("chatml").render(CHAT)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi <b> & bye<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
    )


def test_generation_prompt_is_appended_only_when_asked():
    t = ChatTemplate("chatml")
    user = CHAT[:2]
    assert t.render(user, add_generation_prompt=True) == t.render(user) + "<|im_start|>assistant\n"


def test_llama3_renders_bos_headers_and_trimmed_content():
    text = ChatTemplate("llama3").render(
        [{"role": "user", "content": " hi \n"}, {"role": "assistant", "content": "yo"}]
    )
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>"
    )


def test_gemma_folds_the_system_prompt_into_the_first_user_turn():
    text = ChatTemplate("gemma").render(CHAT[:3], add_generation_prompt=False)
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi <b> & bye<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
    )


def test_environment_features_match_transformers():
    source = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{{ m | tojson }}\n"
        "{% endfor %}"
        "{% set ns = namespace(n=0) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}"
        "{{ strftime_now('%Y') | length }}"
    )
    text = ChatTemplate(source).render(CHAT[1:])
    # tojson keeps <, > and & and non-ASCII as they are (no HTML escaping); trim_blocks ate
    # the newline after the tags; break stopped the loop after one message.
    assert text == '{"role": "user", "content": "Hi <b> & bye"}\n14'


def test_trim_and_lstrip_blocks():
    source = "{% for m in messages %}\n    {% if m.role == 'user' %}\nU:{{ m.content }}\n    {% endif %}\n{% endfor %}"
    assert ChatTemplate(source).render(CHAT[1:2]) == "U:Hi <b> & bye\n"


def test_generation_block_renders_its_body():
    source = (
        "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    )
    assert ChatTemplate(source).render(CHAT[1:3]) == "[Hi <b> & bye][Hello!]"


def test_raise_exception_becomes_a_value_error_naming_the_template():
    source = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(
        ValueError, match=r"chat template starting .*Conversation roles must alternate"
    ):
        ChatTemplate(source, name=None).render(CHAT)
    with pytest.raises(ValueError, match=r"'gemma'.*system message must come first"):
        ChatTemplate("gemma").render([CHAT[1], CHAT[0]])


def test_syntax_errors_and_unknown_names_are_clear():
    with pytest.raises(ValueError, match=r"'mine' does not compile: .*line 1"):
        ChatTemplate("{% for m in messages %}{{ m }}", name="mine")
    with pytest.raises(ValueError, match=r"Unknown chat template name 'vicuna'.*chatml"):
        ChatTemplate("vicuna")


def test_the_sandbox_refuses_python_internals():
    with pytest.raises(ValueError, match="SecurityError|access to attribute"):
        ChatTemplate("{{ messages.append(1) }}").render(CHAT)
    with pytest.raises(ValueError, match="SecurityError"):
        ChatTemplate("{% set ns = namespace() %}{% set ns._x = 1 %}").render(CHAT)


def test_get_config_round_trip():
    for template in (ChatTemplate("llama3"), ChatTemplate("{{ bos_token }}x", bos_token="<s>")):
        config = template.get_config()
        again = ChatTemplate.from_config(config)
        assert again.source == template.source
        assert again.get_config() == config
    assert ChatTemplate("llama3").get_config()["template"] == "llama3"


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_spans_cover_every_assistant_turn_and_its_end_marker(name):
    template = ChatTemplate(name)
    rendered = render_with_assistant_spans(template, CHAT)
    pieces = [rendered.text[s:e] for s, e in rendered.assistant_spans]
    assert pieces == [f"Hello!{template.end_of_turn}", f"4{template.end_of_turn}"]
    assert "".join(p for p, _ in rendered.segments()) == rendered.text


def test_spans_of_a_template_that_ignores_the_generation_prompt():
    # No add_generation_prompt support: the "A: " header must still stay outside the span.
    source = "{% for m in messages %}{{ 'U: ' if m.role == 'user' else 'A: ' }}{{ m.content }}</s>\n{% endfor %}"
    template = ChatTemplate(source, eos_token="</s>")
    rendered = render_with_assistant_spans(template, CHAT[1:])
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == ["Hello!</s>", "4</s>"]


def test_spans_match_generation_markers():
    source = (
        "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}"
        "{{ m.content }}{{ eos_token }}{% endgeneration %}\n{% else %}U: {{ m.content }}\n"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}A: {% endif %}"
    )
    rendered = render_with_assistant_spans(ChatTemplate(source, eos_token="</s>"), CHAT[1:])
    text = rendered.text
    # trim_blocks eats the newline right after {% endgeneration %}, as in transformers.
    assert text == "U: Hi <b> & bye\nA: Hello!</s>U: 2+2?\nA: 4</s>"
    first = text.index("Hello!")
    second = text.index("4</s>")
    assert rendered.assistant_spans == ((first, first + 10), (second, second + 5))


def test_spans_when_a_template_rewrites_earlier_turns():
    # Like reasoning templates: earlier assistant turns lose a prefix, the last keeps it.
    source = (
        "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}"
        "A: {{ m.content.split('|')[-1] }}<e>\n{% elif m.role == 'assistant' %}A: {{ m.content }}<e>\n"
        "{% else %}U: {{ m.content }}\n{% endif %}{% endfor %}"
    )
    chat = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "think|a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "think|a2"},
    ]
    template = ChatTemplate(source, end_of_turn="<e>")
    with pytest.raises(ValueError, match="rewrites or drops it"):
        render_with_assistant_spans(template, chat)
    chat[1]["content"] = "a1"
    rendered = render_with_assistant_spans(template, chat)
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == ["a1<e>", "think|a2<e>"]


def test_segments_split_the_text():
    assert RenderedConversation("abcd", ((1, 2), (3, 4))).segments() == [
        ("a", False),
        ("b", True),
        ("c", False),
        ("d", True),
    ]


def _transformers_render():
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
    except Exception:  # not installed, or too old
        pytest.skip("transformers is not installed")
    return render_jinja_template


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES) + ["features", "generation"])
def test_render_equals_transformers(name):
    render_jinja_template = _transformers_render()
    sources = {
        "features": "{% for m in messages %}{{ m | tojson(indent=1) }}{% if loop.last %}{% break %}{% endif %}\n{% endfor %}{{ eos_token }}",
        "generation": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{{ eos_token }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}",
    }
    template = ChatTemplate(sources.get(name, name), eos_token="</s>" if name in sources else None)
    for add_generation_prompt in (False, True):
        rendered, spans = render_jinja_template(
            [CHAT],
            chat_template=template.source,
            add_generation_prompt=add_generation_prompt,
            bos_token=template.bos_token,
            eos_token=template.eos_token,
            return_assistant_tokens_mask=name == "generation",
        )
        assert template.render(CHAT, add_generation_prompt=add_generation_prompt) == rendered[0]
        if name == "generation":
            ours = render_with_assistant_spans(template, CHAT).assistant_spans
            assert list(ours) == [tuple(s) for s in spans[0]]
