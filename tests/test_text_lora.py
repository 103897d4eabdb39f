"""LoRA and layer-wise learning-rate decay on tiny random keras-hub BERT backbones."""

import json

import numpy as np
import pytest

from tests.test_text import LABELS, TEXTS, text_tuner, trainable_paths


def test_lora_trains_only_lora_weights_and_head(tmp_path):
    import finetunekit as fk

    ft = text_tuner(lora_rank=2)
    paths = trainable_paths(ft)
    backbone = {p for p in paths if not p.startswith("classification_head")}
    assert backbone and all("lora" in p for p in backbone)
    assert any(p.startswith("classification_head") for p in paths)
    assert ft.unfrozen_blocks == ["lora"]
    frozen_before = [v.numpy().copy() for v in ft.backbone.weights if "lora" not in v.path]
    ft.compile(learning_rate=1e-2)
    ft.fit(TEXTS, LABELS, epochs=2, batch_size=4, verbose=0)
    frozen_after = [v.numpy() for v in ft.backbone.weights if "lora" not in v.path]
    for a, b in zip(frozen_before, frozen_after, strict=True):
        np.testing.assert_array_equal(a, b)
    lora_b = [v.numpy() for v in ft.backbone.weights if "lora_kernel_b" in v.path]
    assert any(np.abs(w).max() > 0 for w in lora_b)  # LoRA weights moved from their zero init
    before = ft.predict(TEXTS, verbose=0)
    path = str(tmp_path / "lora.keras")
    ft.save(path)
    loaded = fk.load(path)
    assert loaded.backbone_kind.lora_rank == 2
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), before, atol=1e-5)
    assert loaded.predict_labels(TEXTS) == ft.predict_labels(TEXTS)


def test_lora_needs_a_frozen_backbone():
    with pytest.raises(ValueError, match="unfreeze=0"):
        text_tuner(lora_rank=2, unfreeze="all")
    with pytest.raises(ValueError, match="lora_rank"):
        text_tuner(lora_rank=0)


def test_layer_decay_multipliers():
    from finetunekit.training.optimizer import LayerDecayAdamW

    ft = text_tuner(unfreeze="all", layer_decay=0.5)
    multipliers = ft.backbone_kind.learning_rate_multipliers()
    assert multipliers["token_embedding/embeddings"] == pytest.approx(0.125)
    layer0 = [v for k, v in multipliers.items() if k.startswith("transformer_layer_0/")]
    layer1 = [v for k, v in multipliers.items() if k.startswith("transformer_layer_1/")]
    assert set(layer0) == {0.25} and set(layer1) == {0.5}
    assert not any(k.startswith("classification_head") for k in multipliers)  # head: full rate
    ft.compile(learning_rate=1e-3)
    assert isinstance(ft.optimizer, LayerDecayAdamW)
    ft.fit(TEXTS, LABELS, epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="layer_decay"):
        text_tuner(layer_decay=1.5)


def test_layer_decay_optimizer_scales_the_learning_rate():
    import keras

    from finetunekit.training.optimizer import LayerDecayAdamW

    a = keras.Variable(np.ones(3, "float32"), name="a")
    b = keras.Variable(np.ones(3, "float32"), name="b")
    opt = LayerDecayAdamW(learning_rate=0.1, weight_decay=0.0, lr_multipliers={b.path: 0.5})
    opt.apply([np.ones(3, "float32"), np.ones(3, "float32")], [a, b])
    # Adam's first step moves by ~lr whatever the gradient scale.
    np.testing.assert_allclose(1 - a.numpy(), 0.1, rtol=1e-3)
    np.testing.assert_allclose(1 - b.numpy(), 0.05, rtol=1e-3)


def test_layer_decay_optimizer_config_round_trip(tmp_path):
    import keras

    import finetunekit as fk
    from finetunekit.training.optimizer import LayerDecayAdamW

    opt = LayerDecayAdamW(learning_rate=2e-5, lr_multipliers={"x/kernel": 0.3})
    config = json.loads(json.dumps(keras.optimizers.serialize(opt)))
    rebuilt = keras.optimizers.deserialize(config)
    assert isinstance(rebuilt, LayerDecayAdamW)
    assert rebuilt.lr_multipliers == {"x/kernel": 0.3}
    with pytest.raises(ValueError, match="multipliers"):
        LayerDecayAdamW(lr_multipliers={"x": -1})

    ft = text_tuner(unfreeze="all", layer_decay=0.8)
    ft.compile(learning_rate=1e-3)
    ft.fit(TEXTS, LABELS, epochs=1, batch_size=8, verbose=0)
    path = str(tmp_path / "decay.keras")
    ft.save(path)
    loaded = fk.load(path)
    assert isinstance(loaded.optimizer, LayerDecayAdamW)
    assert loaded.optimizer.lr_multipliers == ft.optimizer.lr_multipliers
    np.testing.assert_allclose(
        loaded.predict(TEXTS, verbose=0), ft.predict(TEXTS, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize("graph", [False, True])
def test_fused_adam_update_equals_keras_adamw(graph):
    # LayerDecayAdamW updates dense float variables with TensorFlow's fused
    # ResourceApplyAdam op; weights must follow keras.optimizers.AdamW (weight
    # decay, bias correction, epsilon) step by step, the sparse gradient of an
    # embedding lookup (Keras' own path) included.
    import keras
    import tensorflow as tf

    from finetunekit.training.optimizer import LayerDecayAdamW

    rng = np.random.default_rng(0)
    start = [rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")]
    ids = tf.constant([0, 2, 2])

    def run(optimizer):
        kernel, bias = (keras.Variable(w) for w in start)
        optimizer.exclude_from_weight_decay(var_list=[bias])

        def step(k):
            with tf.GradientTape() as tape:
                rows = tf.gather(kernel.value, ids)  # an IndexedSlices gradient
                loss = tf.reduce_sum(tf.square(rows @ tf.reshape(bias.value, (3, 1)) - k))
            grads = tape.gradient(loss, [kernel.value, bias.value])
            optimizer.apply(grads, [kernel, bias])

        step = tf.function(step) if graph else step
        for k in range(4):
            step(tf.constant(float(k)))
        return kernel.numpy(), bias.numpy()

    options = dict(learning_rate=0.05, weight_decay=0.1, epsilon=1e-3)
    fused = run(LayerDecayAdamW(**options))
    stock = run(keras.optimizers.AdamW(**options))
    assert not np.allclose(fused[1], start[1])  # they trained
    for a, b in zip(fused, stock):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
