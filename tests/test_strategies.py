"""Training strategies: compile defaults, layer-wise LR decay, gradual unfreezing."""

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.training.optimizer import LayerDecayAdamW
from tests.conftest import tiny_cnn


def _data(n=16, size=16):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.integers(0, 100, (n, size, size, 3)) + 150 * y[:, None, None, None]
    return x.astype("uint8"), y


def _tuner(head=None, **kwargs):
    return fk.FineTuner(
        backbone=tiny_cnn(),
        head=head or fk.ClassificationHead(2),
        preprocessing="zero_one",
        **kwargs,
    )


# ------------------------------------------------------------ compile options
def test_label_smoothing_loss_and_metrics():
    ft = _tuner()
    ft.compile(label_smoothing=0.1)
    assert isinstance(ft.loss, fk.losses.SparseCategoricalCrossentropyWithSmoothing)
    y_true = np.array([0, 1])
    y_pred = np.array([[0.9, 0.1], [0.2, 0.8]], "float32")
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(2)[y_true], y_pred)
    np.testing.assert_allclose(ft.loss(y_true, y_pred), expected, rtol=1e-6)
    x, y = _data()
    history = ft.fit(x, y, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    config = keras.saving.serialize_keras_object(ft.loss)
    assert keras.saving.deserialize_keras_object(config).label_smoothing == 0.1
    multi = _tuner(head=fk.ClassificationHead(2, multi_label=True))
    multi.compile(label_smoothing=0.2)
    assert multi.loss.get_config()["label_smoothing"] == 0.2
    with pytest.raises(ValueError, match="classification"):
        _tuner(head=fk.RegressionHead()).compile(label_smoothing=0.1)


def test_warmup_cosine_schedule():
    ft = _tuner()
    ft.compile(learning_rate=1e-2, schedule="cosine", warmup_steps=4, decay_steps=10)
    schedule = (
        ft.optimizer.learning_rate_schedule
        if hasattr(ft.optimizer, "learning_rate_schedule")
        else ft.optimizer._learning_rate
    )
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    lrs = [float(schedule(step)) for step in (0, 2, 4, 9, 14)]
    np.testing.assert_allclose(lrs[:3], [0.0, 5e-3, 1e-2], rtol=1e-5, atol=1e-9)
    assert lrs[3] < 1e-2 and lrs[4] == pytest.approx(0.0, abs=1e-8)
    x, y = _data()
    ft.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert int(ft.optimizer.iterations) == 4
    assert float(ft.optimizer.learning_rate) == pytest.approx(1e-2, rel=1e-5)
    with pytest.raises(ValueError, match="decay_steps"):
        ft.compile(schedule="cosine")
    with pytest.raises(ValueError, match="Unknown schedule"):
        ft.compile(schedule="linear", decay_steps=3)


def test_clipnorm_accumulation_and_ema():
    x, y = _data()
    ft = _tuner()
    ft.compile(clipnorm=1.0, gradient_accumulation_steps=2, use_ema=True)
    optimizer = ft.optimizer
    assert optimizer.clipnorm == 1.0
    assert optimizer.gradient_accumulation_steps == 2
    assert optimizer.use_ema
    before = ft.head.get_weights()[0].copy()
    ft.fit(x, y, epochs=1, batch_size=4, verbose=0, cache_features=False)
    assert int(optimizer.iterations) == 2  # 4 batches, one update per 2 accumulated
    assert not np.allclose(before, ft.head.get_weights()[0])
    with pytest.raises(ValueError, match="optimizer"):
        ft.compile(optimizer="adam", clipnorm=1.0)


def test_jit_compile_and_steps_per_execution_pass_through():
    ft = _tuner()
    ft.compile(jit_compile=False, steps_per_execution=2)
    assert ft.steps_per_execution == 2 and ft.jit_compile is False


# --------------------------------------------------------- layer-wise LR decay
def test_layer_decay_multipliers_and_lower_blocks_move_less():
    ft = _tuner(unfreeze="all", layer_decay=0.1)
    multipliers = ft.backbone_kind.learning_rate_multipliers()
    backbone = ft.backbone
    # timm's convention: two blocks (block1_conv | block1_bn .. block2_bn); the top
    # block trains at layer_decay times the head's rate, the one below at layer_decay**2.
    expected = {
        "block1_conv": 0.1**2,
        "block1_bn": 0.1,
        "block2_conv": 0.1,
        "block2_bn": 0.1,
    }
    for name, scale in expected.items():
        for variable in backbone.get_layer(name).weights:
            assert multipliers[variable.path] == pytest.approx(scale)
    assert not any(v.path in multipliers for v in ft.head.weights)
    ft.compile(learning_rate=1e-3, weight_decay=0.0)
    assert isinstance(ft.optimizer, LayerDecayAdamW)
    for variable in ft.head.trainable_variables:
        assert ft.optimizer.multiplier(variable) == 1.0
    kernels = {
        n: backbone.get_layer(n).kernel.numpy().copy() for n in ("block1_conv", "block2_conv")
    }
    x, y = _data(8)
    ft.fit(x, y, epochs=1, batch_size=8, verbose=0)
    moved = {n: np.abs(backbone.get_layer(n).kernel.numpy() - k).mean() for n, k in kernels.items()}
    # Adam's first step moves each weight by about lr * multiplier (0.1**2 vs 0.1).
    assert moved["block1_conv"] / moved["block2_conv"] == pytest.approx(0.1, rel=0.3)
    assert fk.FineTuner.from_config(ft.get_config()).backbone_kind.layer_decay == 0.1


def test_layer_decay_named_backbone_uses_blocks():
    ft = fk.FineTuner(
        "MobileNetV2",
        head=fk.ClassificationHead(2),
        weights=None,
        input_shape=(32, 32, 3),
        layer_decay=0.5,
    )
    groups = ft.backbone_kind.groups()
    multipliers = ft.backbone_kind.learning_rate_multipliers()
    top_name, top_layers = groups[-1]
    low_name, low_layers = groups[-3]
    # The same convention as text encoders: top block x0.5, two blocks lower x0.5**3.
    assert multipliers[top_layers[0].weights[0].path] == 0.5
    assert multipliers[low_layers[0].weights[0].path] == 0.125
    with pytest.raises(ValueError, match="layer_decay"):
        _tuner(layer_decay=1.5)


# --------------------------------------------------------- gradual unfreezing
def _trained_layers(ft, before):
    """Names of backbone layers whose variables changed since `before`."""
    changed = {
        v.path.split("/")[0]
        for v in ft.backbone.weights
        if not np.array_equal(v.numpy(), before[v.path])
    }
    return sorted(changed)


def test_gradual_unfreezing_callback_unfreezes_one_block_per_stage():
    x, y = _data()
    ft = _tuner()
    ft.compile(learning_rate=1e-2)
    callback = fk.schedules.GradualUnfreezing(every=1, max_blocks=4)
    trained = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.before = {v.path: v.numpy().copy() for v in ft.backbone.weights}

        def on_epoch_end(self, epoch, logs=None):
            trained.append(_trained_layers(ft, self.before))

    history = ft.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[callback, Watch()])
    assert history.epoch == list(range(5))
    # Two blocks (BatchNorm, always frozen, closes no block of its own): every stage
    # opens a block that trains.
    assert [stage[0] for stage in callback.stages] == [1, 2]
    assert callback.stages[-1][1] == ["block1_conv", "block2_conv"]
    assert trained == [[], ["block2_conv"]] + [["block1_conv", "block2_conv"]] * 3


def test_fine_tune_gradual():
    x, y = _data()
    ft = _tuner()
    history = ft.fine_tune(
        x,
        y,
        epochs=4,
        freeze_epochs=1,
        unfreeze=2,
        gradual=True,
        every=2,
        batch_size=8,
        verbose=0,
    )
    assert history.epoch == [0, 1, 2, 3]
    assert ft.unfrozen_blocks == ["block1_conv", "block2_conv"]
