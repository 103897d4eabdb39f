"""SFT records: formats, files and the errors and warnings on bad data."""

import json
import warnings

import pytest

from finetunekit.families.causal_lm.records import Example, to_examples, validate_messages

U = {"role": "user", "content": "Hi"}
A = {"role": "assistant", "content": "Hello"}
S = {"role": "system", "content": "Be nice"}


def test_prompt_completion_becomes_a_conversation():
    [ex] = to_examples([{"prompt": "2+2?", "completion": "4", "system": "Be exact."}])
    assert ex.messages == (
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    )


def test_alpaca_puts_the_input_after_the_instruction():
    with_input, without = to_examples(
        [
            {"instruction": "Translate", "input": "chat", "output": "cat"},
            {"instruction": "Say hi", "input": "", "output": "hi"},
        ]
    )
    assert with_input.messages[0] == {"role": "user", "content": "Translate\n\nchat"}
    assert without.messages == (
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "hi"},
    )


def test_messages_and_text_records():
    [conv] = to_examples([{"messages": [S, U, A, U, A]}])
    assert [m["role"] for m in conv.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    texts = to_examples([{"text": "Once upon a time"}, {"text": "The end"}])
    assert [t.text for t in texts] == ["Once upon a time", "The end"]
    assert not texts[0].is_conversation


def test_files_and_frames_give_the_same_examples(tmp_path):
    pd = pytest.importorskip("pandas")
    records = [
        {"messages": [U, A]},
        {"messages": [S, U, {"role": "assistant", "content": 'x, "quoted"\nline'}]},
    ]
    expected = to_examples(records)
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    (tmp_path / "d.json").write_text(json.dumps(records))
    pd.DataFrame({"messages": [json.dumps(r["messages"]) for r in records]}).to_csv(
        tmp_path / "d.csv", index=False
    )
    pd.DataFrame(records).to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.json", "d.csv", "d.parquet"):
        assert to_examples(tmp_path / name) == expected, name
    assert to_examples(pd.DataFrame(records)) == expected
    frame = pd.DataFrame([{"prompt": "p", "completion": "c"}])
    assert to_examples(frame)[0].messages[1]["content"] == "c"


@pytest.mark.parametrize(
    "messages, message",
    [
        ([U], r"record 0: the conversation has no assistant turn.*'text'"),
        ([U, U, A], r"record 0, message 1: two user turns in a row\. Merge them"),
        ([A, U], r"message 0: the conversation starts with an assistant turn"),
        ([S, A], r"message 1: the conversation starts with an assistant turn"),
        ([U, A, A], r"message 2: two assistant turns in a row"),
        ([U, S, A], r"message 1: a system message may only be the first"),
        (
            [U, {"role": "assistant", "content": "  "}],
            r"message 1: the assistant response is empty",
        ),
        (
            [U, {"role": "assistant", "content": 4}],
            r"message 1: the content is a int, not a string",
        ),
        ([{"role": "human", "content": "x"}, A], r"unknown role 'human'.*'human' -> 'user'"),
        (
            [U, {"role": "assistant", "content": "x", "tool_calls": []}],
            r"unknown message keys \['tool_calls'\]",
        ),
        ([], r"'messages' must be a non-empty list"),
    ],
)
def test_bad_conversations_raise_naming_the_problem(messages, message):
    with pytest.raises(ValueError, match=message):
        to_examples([{"messages": messages}])


@pytest.mark.parametrize(
    "record, message",
    [
        (
            {"question": "q", "answer": "a"},
            r"record 0: unknown record format with keys \['answer', 'question'\]; expected one of",
        ),
        ({"prompt": "q", "completion": ""}, r"'completion' \(the response\) is empty"),
        ({"instruction": "q", "output": None}, r"'output' \(the response\) is None, not a string"),
        ({"prompt": "q", "completion": float("nan")}, r"is a missing value \(NaN\)"),
        ({"text": "t", "prompt": "q", "completion": "c"}, r"match several formats"),
        ("just a string", r"a record must be a dict"),
    ],
)
def test_bad_records_raise_naming_the_problem(record, message):
    with pytest.raises(ValueError, match=message):
        to_examples([record])


def test_errors_name_the_record_index_and_the_file(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [{"prompt": "a", "completion": "b"}] * 2 + [{"messages": [U, U]}]
    path.write_text("\n".join(json.dumps(r) for r in lines))
    with pytest.raises(ValueError, match=r"^record 2 of train\.jsonl, message 1: two user turns"):
        to_examples(path)
    path.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl, line 2: not valid JSON"):
        to_examples(path)
    (tmp_path / "x.json").write_text('{"text": "not a list"}')
    with pytest.raises(ValueError, match="not a list of records"):
        to_examples(tmp_path / "x.json")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"unknown data file type '\.txt'"):
        to_examples(tmp_path / "x.txt")


def test_text_and_conversations_do_not_mix():
    with pytest.raises(ValueError, match=r"record 1 is 'text' but record 0 is 'prompt_completion'"):
        to_examples([{"prompt": "a", "completion": "b"}, {"text": "c"}])
    # prompt/completion and messages are both conversations: fine
    assert len(to_examples([{"prompt": "a", "completion": "b"}, {"messages": [U, A]}])) == 2


def test_suspicious_data_warns_once_per_kind_with_counts():
    records = [
        {"messages": [U, A], "id": 1},
        {"messages": [U, A], "id": 2},
        {"messages": [U, A, U], "id": 3},
        {"prompt": "", "completion": "c", "source": "web"},
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        examples = to_examples(records)
    texts = [str(w.message) for w in caught]
    assert len(examples) == 4
    assert "Ignoring columns: 'id' (3 records), 'source' (1 records)." in texts
    assert any(t.startswith("1 of 4 conversations have an empty user prompt") for t in texts)
    assert any(t.startswith("1 of 4 conversations end with a user turn") for t in texts)
    assert any(t.startswith("1 of 4 records are exact duplicates") for t in texts)
    assert len(texts) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_examples([{"messages": [U, A]}])  # clean data: silent


def test_validate_messages_returns_plain_dicts():
    out = validate_messages([S, U, A], where="chat 7")
    assert out == (S, U, A) and isinstance(out, tuple)
    with pytest.raises(ValueError, match="^chat 7: the conversation has no assistant turn"):
        validate_messages([S, U], where="chat 7")
    assert Example(messages=out).is_conversation
