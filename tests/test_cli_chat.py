"""`finetunekit fit --task chat`, `evaluate`/`predict` of a chat model and `finetunekit chat`.

Runs `finetunekit.cli.main` in-process on a tiny random ChatML Llama
(`tests/causal_lm_fixtures.py`) exported as a keras-hub preset folder. The
bad-input rows (`CASES`) are in docs/errors.md ("Command line: chat").
"""

import io
import json
import os
import re
import sys

import pytest

from finetunekit import cli
from tests.catalogue import undocumented
from tests.causal_lm_fixtures import FACTS

TRAIN = ["--lora-rank", "2", "--epochs", "1", "--batch-size", "4", "--validation-split", "0",
         "--learning-rate", "1e-2", "--quiet"]  # fmt: skip


def _conversation(fact):
    return {"messages": [{"role": "user", "content": fact["prompt"]},
                         {"role": "assistant", "content": fact["completion"]}]}  # fmt: skip


def _write_lines(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A tiny Llama preset folder, chat data files, a chat model fitted by the CLI, a classifier."""
    import finetunekit as fk
    from tests.causal_lm_fixtures import tiny_llama
    from tests.conftest import tiny_tuner

    root = str(tmp_path_factory.mktemp("cli_chat"))
    preset = os.path.join(root, "tiny_llama")
    fk.FineTuner(backbone=tiny_llama(sequence_length=64), head=fk.InstructionHead(),
                 unfreeze="all").export(preset, format="keras_hub")  # fmt: skip
    data = _write_lines(os.path.join(root, "conversations.jsonl"), [_conversation(f) for f in FACTS])
    no_answer = _write_lines(os.path.join(root, "no_answer.jsonl"),
                             [{"messages": [{"role": "user", "content": "hi"}]}])  # fmt: skip
    empty = _write_lines(os.path.join(root, "empty.jsonl"), [])
    prompts = os.path.join(root, "prompts.txt")
    with open(prompts, "w", encoding="utf-8") as f:
        f.write("where do i live?\n\nwhat do i drink?\n")
    model = os.path.join(root, "chat.keras")
    code = cli.main(["fit", "--task", "chat", "--backbone", preset, "--data", data,
                     "--out", model, *TRAIN])  # fmt: skip
    assert code == 0
    class_model = os.path.join(root, "classes.keras")
    tiny_tuner().save(class_model)
    return {"root": root, "backbone": preset, "data": data, "no_answer": no_answer,
            "empty": empty, "prompts": prompts, "model": model, "class_model": class_model}  # fmt: skip


def test_fit_task_chat_saves_a_loadable_chat_model(places, tmp_path, capsys):
    import finetunekit as fk

    out = str(tmp_path / "again.keras")
    argv = ["fit", "--task", "chat", "--backbone", places["backbone"], "--data", places["data"],
            "--train-on", "all", "--sequence-length", "48", "--out", out, *TRAIN]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Training chat on" in printed and "4 conversations, LoRA rank 2" in printed
    assert f"Saved {out}" in printed
    loaded = fk.load(out)
    assert type(loaded.head).__name__ == "InstructionHead" and loaded.head.train_on == "all"
    assert isinstance(loaded.generate("hello", max_new_tokens=2), str)


def test_fit_task_chat_on_a_gguf_file_then_predict(tmp_path, capsys):
    """End to end from a `.gguf` file: its own template and tokenizer, fitted, saved, answering."""
    pytest.importorskip("gguf")
    import finetunekit as fk
    from tests.test_causal_lm_gguf import TEMPLATE, random_backbone, vocabulary, write_tiny_gguf

    gguf_file = str(write_tiny_gguf(tmp_path / "tiny.gguf", random_backbone(True, len(vocabulary()))))
    records = [{"prompt": p, "completion": c} for p, c in
               [("hello", "world"), ("hello world", "hello"), ("world", "hello world"), ("he", "wo")]]
    data = _write_lines(str(tmp_path / "chats.jsonl"), records)
    out = str(tmp_path / "from_gguf.keras")
    argv = ["fit", "--task", "chat", "--backbone", gguf_file, "--data", data, "--out", out, *TRAIN]
    assert cli.main(argv) == 0
    assert f"Saved {out}" in capsys.readouterr().out
    loaded = fk.load(out)
    assert loaded.head.chat_template.source == TEMPLATE  # the file's own template travels
    assert type(loaded.backbone).__name__ == "GGUFLlamaBackbone"
    assert any("lora" in v.path for v in loaded.trainable_variables)
    argv = ["predict", out, "hello", "world", "--max-new-tokens", "3", "--json"]
    assert cli.main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["prompt"] for row in rows] == ["hello", "world"]
    assert rows[0]["answer"] == loaded.generate("hello", max_new_tokens=3)


def test_evaluate_report_prints_loss_perplexity_and_answer_scores(places, capsys):
    assert cli.main(["evaluate", places["model"], "--data", places["data"], "--report"]) == 0
    printed = capsys.readouterr().out
    for name in ("loss", "perplexity", "exact_match", "chrf"):
        assert re.search(rf"{name}: \d", printed), printed
    assert cli.main(["evaluate", "--model", places["model"], "--data", places["data"], "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["num_examples"] == 4 and scores["perplexity"] > 1
    assert cli.main(["evaluate", "--data", places["data"]]) == 2  # no model: a usage error
    assert "name the model once" in capsys.readouterr().err


def test_predict_prints_one_answer_per_prompt(places, tmp_path, capsys):
    argv = ["predict", places["model"], "where do i live?", "what is my dog called?",
            "--max-new-tokens", "4"]  # fmt: skip
    assert cli.main(argv) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    out = str(tmp_path / "answers.json")
    argv = ["predict", "--model", places["model"], "--data", places["prompts"], "--out", out,
            "--max-new-tokens", "3", "--strategy", "top_k"]  # fmt: skip
    assert cli.main(argv) == 0
    with open(out, encoding="utf-8") as f:
        rows = json.load(f)
    assert [row["prompt"] for row in rows] == ["where do i live?", "what do i drink?"]
    assert all(isinstance(row["answer"], str) for row in rows)
    assert cli.main(["predict", places["model"]]) == 2  # no prompts: a usage error
    assert "give the inputs" in capsys.readouterr().err


def test_chat_loop_answers_each_line_keeps_the_history_and_ends_at_eof(places, monkeypatch, capsys):
    import finetunekit as fk

    seen = []
    original = fk.InstructionHead.chat

    def spy(self, tuner, messages, *args, **options):
        seen.append([dict(m) for m in messages])
        return original(self, tuner, messages, *args, **options)

    monkeypatch.setattr(fk.InstructionHead, "chat", spy)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\nwhere do i live?\n"))
    argv = ["chat", places["model"], "--system", "be brief.", "--max-new-tokens", "3"]
    assert cli.main(argv) == 0
    assert [len(m) for m in seen] == [2, 4]  # system + user, then the first exchange + user
    assert seen[1][0] == {"role": "system", "content": "be brief."}
    assert seen[1][2]["role"] == "assistant" and seen[1][3]["content"] == "where do i live?"
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/exit\nnever read\n"))
    assert cli.main(["chat", places["model"], "--max-new-tokens", "2"]) == 0
    assert len(seen) == 3


def test_unwritable_out_folder_is_refused_before_training(places, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root writes anywhere: make the check see what a user would
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(folder) else real(p, mode))
    out = str(folder / "m.keras")
    argv = ["fit", "--task", "chat", "--backbone", places["backbone"], "--data", places["data"],
            "--out", out, *TRAIN]  # fmt: skip
    assert cli.main(argv) == 3
    captured = capsys.readouterr()
    assert re.search(r"--out '.*m\.keras' cannot be written: no write permission", captured.err)
    assert "Training" not in captured.out and not os.path.exists(out)


# fmt: off
CASES = [
    ("chat_data_missing", ["fit", "--task", "chat", "--backbone", "{backbone}", "--data", "{root}/nothing.jsonl", "--out", "{out}"],
     r"--data: no such file or folder: '.*nothing\.jsonl'"),
    ("chat_data_empty", ["fit", "--task", "chat", "--backbone", "{backbone}", "--data", "{empty}", "--out", "{out}"],
     r"No records in empty\.jsonl; there is nothing to train on"),
    ("chat_no_assistant_turn", ["fit", "--task", "chat", "--backbone", "{backbone}", "--data", "{no_answer}", "--out", "{out}"],
     r"record 0.*no assistant turn"),
    ("chat_with_image_option", ["fit", "--task", "chat", "--backbone", "{backbone}", "--data", "{data}", "--image-size", "64", "--out", "{out}"],
     r"--image-size applies to image or seq2seq tasks; --task chat takes none"),
    ("chat_option_for_another_task", ["fit", "--task", "seq2seq", "--backbone", "bart_base_en", "--data", "{data}", "--lora-rank", "8", "--out", "{out}"],
     r"--lora-rank applies to --task chat only \(this is --task seq2seq\)"),
    ("chat_out_folder_is_a_file", ["fit", "--task", "chat", "--backbone", "{backbone}", "--data", "{data}", "--out", "{data}/m.keras"],
     r"--out '.*m\.keras': the folder '.*conversations\.jsonl' is not a folder"),
    ("chat_model_is_not_a_chat_model", ["chat", "{class_model}"],
     r"'.*classes\.keras' is a classification model, not a chat model"),
]
# fmt: on


@pytest.mark.parametrize("case_id,argv,pattern", CASES, ids=[c[0] for c in CASES])
def test_cli_chat_bad_input(case_id, argv, pattern, places, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    out = str(tmp_path / "model.keras")
    code = cli.main([a.format(out=out, **places) for a in argv])
    captured = capsys.readouterr()
    assert code == 3, captured.out[-2000:] + captured.err[-2000:]
    assert re.search(pattern, captured.err), captured.err[-3000:]
    assert "Traceback" not in captured.err
    assert "Training" not in captured.out and not os.path.exists(out)


def test_cli_chat_catalogue_is_documented():
    ids = [c[0] for c in CASES] + ["chat_out_not_writable"]
    assert undocumented(ids, "Command line: chat") == []
