import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.conftest import tiny_tuner


def _images(n=24, size=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, size, size, channels)).astype("uint8")


def _separable(n=48, size=16, seed=0):
    """Images whose class is the mean brightness: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 100, (n, size, size, 3)) + 150 * y[:, None, None, None]
    return x.astype("uint8"), np.where(y == 1, "bright", "dark")


def test_fine_tuner_is_a_keras_model_with_preprocessing_inside():
    ft = tiny_tuner()
    assert isinstance(ft, keras.Model)
    names = [layer.name for layer in ft.layers]
    assert "image_formatter" in names and "image_normalization" in names
    assert ft.input_shape == (None, None, None, None)
    ft.summary(print_fn=lambda *a, **k: None)


def test_fit_predict_string_labels_learns():
    x, y = _separable()
    ft = tiny_tuner(unfreeze="all")
    ft.compile(learning_rate=1e-2)
    history = ft.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert ft.class_names == ["bright", "dark"]
    assert history.history["accuracy"][-1] >= 0.9
    probs = ft.predict(x, verbose=0)
    assert probs.shape == (48, 2) and probs.dtype == np.float32
    labels = ft.predict_labels(x)
    assert np.mean(np.asarray(labels) == y) >= 0.9
    loss, accuracy = ft.evaluate(x, y, verbose=0)
    assert accuracy >= 0.9


def test_raw_images_of_any_size_and_channels():
    ft = tiny_tuner()
    for shape in [(2, 16, 16, 3), (2, 30, 21, 3), (2, 16, 16, 1), (2, 9, 9), (2, 12, 12, 4)]:
        out = ft.predict(np.random.default_rng(0).integers(0, 255, shape).astype("uint8"), verbose=0)
        assert out.shape == (2, 2)
    floats = ft.predict(_images(2).astype("float32"), verbose=0)
    ints = ft.predict(_images(2), verbose=0)
    np.testing.assert_allclose(floats, ints, atol=1e-6)


def test_batchnorm_statistics_frozen_when_backbone_unfrozen():
    ft = tiny_tuner(unfreeze="all")
    bn = ft.backbone.get_layer("block1_bn")
    conv = ft.backbone.get_layer("block1_conv")
    mean_before = bn.moving_mean.numpy().copy()
    var_before = bn.moving_variance.numpy().copy()
    gamma_before = bn.gamma.numpy().copy()
    kernel_before = conv.kernel.numpy().copy()
    x, y = _separable(32)
    ft.compile(learning_rate=1e-2)
    ft.fit(x, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mean_before)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), var_before)
    np.testing.assert_array_equal(bn.gamma.numpy(), gamma_before)
    assert not np.allclose(conv.kernel.numpy(), kernel_before), "unfrozen conv must train"


def test_frozen_backbone_only_trains_head():
    ft = tiny_tuner(unfreeze=0)
    backbone_ids = {id(w) for w in ft.backbone.weights}
    assert ft.trainable_weights
    assert not any(id(w) in backbone_ids for w in ft.trainable_weights)
    before = [w.numpy().copy() for w in ft.backbone.weights]
    x, y = _separable(16)
    ft.fit(x, y, epochs=1, verbose=0)
    for w, b in zip(ft.backbone.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_unfreeze_n_opens_whole_resnet_stages():
    ft = fk.FineTuner(
        "ResNet50", fk.ClassificationHead(2), weights=None, input_shape=(32, 32, 3), unfreeze=2
    )
    assert ft.unfrozen_blocks == ["conv4", "conv5"]
    for layer in ft.backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # random weights: BatchNorm learns its statistics in the opened stages only
            assert layer.trainable == layer.name.startswith(("conv4_", "conv5_")), layer.name
        elif layer.weights:
            in_top = layer.name.startswith(("conv4_", "conv5_"))
            assert layer.trainable == in_top, layer.name
    ft.set_unfreeze(0)
    assert not ft.backbone.trainable_weights
    with pytest.raises(ValueError, match='has 4 blocks .*unfreeze="all"'):
        ft.set_unfreeze(5)
    with pytest.raises(ValueError, match="`unfreeze` must be"):
        ft.set_unfreeze("some")


def test_save_load_identical_predictions_in_fresh_process(tmp_path):
    x, y = _separable(16)
    ft = tiny_tuner(augment={"horizontal_flip": True, "rotation_range": 10}, unfreeze=1)
    ft.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    ft.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", ft.predict(x, verbose=0))
    script = textwrap.dedent(
        f"""
        import numpy as np, finetunekit as fk
        ft = fk.load({path!r})
        assert type(ft).__name__ == "FineTuner", type(ft)
        assert ft.class_names == ["bright", "dark"], ft.class_names
        x = np.load({str(tmp_path / 'x.npy')!r})
        np.testing.assert_allclose(ft.predict(x, verbose=0), np.load({str(tmp_path / 'p.npy')!r}), atol=1e-6)
        assert ft.unfreeze == 1 and len(ft.augmentation_layers) == 2
        print(ft.predict_labels(x[:2]))
        ft.fit(x, np.array(["bright", "dark"] * 8), epochs=1, verbose=0)
        print("OK")
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


def test_config_roundtrip_rebuilds_same_structure():
    ft = tiny_tuner(unfreeze=1, augment="default", class_names=["a", "b"])
    config = json.loads(json.dumps(ft.get_config()))
    rebuilt = fk.FineTuner.from_config(config)
    assert rebuilt.class_names == ["a", "b"]
    assert rebuilt.unfreeze == 1
    assert [type(a).__name__ for a in rebuilt.augmentation_layers] == [
        type(a).__name__ for a in ft.augmentation_layers
    ]
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in ft.weights]


def test_augmentation_only_in_training():
    ft = tiny_tuner(augment="default")
    x = _images(4)
    np.testing.assert_allclose(ft.predict(x, verbose=0), ft.predict(x, verbose=0))
    train_out = keras.ops.convert_to_numpy(ft(x.astype("float32"), training=True))
    assert not np.allclose(train_out, ft.predict(x, verbose=0))


def test_fine_tune_two_stages():
    x, y = _separable(32)
    ft = fk.FineTuner(
        "MobileNetV2", fk.ClassificationHead(2), weights=None, input_shape=(32, 32, 3)
    )
    history = ft.fine_tune(x, y, epochs=3, freeze_epochs=1, unfreeze=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 3
    assert history.epoch == [0, 1, 2]
    assert ft.unfreeze == 2 and ft.unfrozen_blocks == ["15", "16"]
    assert float(keras.ops.convert_to_numpy(ft.optimizer.learning_rate)) == pytest.approx(1e-4)


def test_fine_tune_validation_split_on_folder(tmp_path):
    from tests.conftest import write_images

    folder = write_images(str(tmp_path / "photos"), {"a": 6, "b": 6})
    ft = tiny_tuner()
    history = ft.fine_tune(
        folder, epochs=2, freeze_epochs=1, unfreeze=1, validation_split=0.25, seed=0, verbose=0
    )
    assert len(history.history["val_loss"]) == 2
    assert ft.class_names == ["a", "b"]


def test_multi_label_and_regression_heads_train():
    x = _images(16)
    ft = tiny_tuner(head=fk.ClassificationHead(3, multi_label=True))
    ft.fit(x, [["a"], ["b", "c"], [], ["a", "c"]] * 4, epochs=1, verbose=0)
    assert ft.class_names == ["a", "b", "c"]
    labels = ft.predict_labels(x[:3])
    assert len(labels) == 3 and all(isinstance(row, list) for row in labels)
    reg = tiny_tuner(head=fk.RegressionHead(units=1))
    reg.fit(x, np.linspace(0, 1, 16), epochs=1, verbose=0)
    assert reg.predict(x, verbose=0).shape == (16, 1)
    with pytest.raises(ValueError, match="RegressionHead needs numeric targets"):
        reg.fit(x, ["a"] * 16, epochs=1, verbose=0)


def test_mixed_precision_policy_applied_and_outputs_float32():
    ft = tiny_tuner(mixed_precision=True, unfreeze="all")
    assert ft.policy_name == "mixed_float16"
    conv = ft.backbone.get_layer("block1_conv")
    assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
    assert ft.head.output_dense.compute_dtype == "float32"
    ft.compile()
    assert isinstance(ft.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = _separable(8)
    ft.fit(x, y, epochs=1, verbose=0)
    out = ft.predict(x, verbose=0)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    assert keras.config.dtype_policy().name == "float32", "global policy must be restored"


def test_mixed_bfloat16_and_auto_on_cpu():
    ft = fk.FineTuner(
        "MobileNetV2",
        fk.ClassificationHead(2),
        weights=None,
        input_shape=(32, 32, 3),
        mixed_precision="bfloat16",
    )
    assert ft.backbone.get_layer("Conv1").compute_dtype == "bfloat16"
    assert ft.predict(_images(2, 32), verbose=0).dtype == np.float32
    ft.compile()
    assert not isinstance(ft.optimizer, keras.optimizers.LossScaleOptimizer)
    assert tiny_tuner(mixed_precision="auto").policy_name == "float32"  # no GPU here
    with pytest.raises(ValueError, match="mixed_precision"):
        tiny_tuner(mixed_precision="half")


def test_compile_defaults_and_passthrough():
    ft = tiny_tuner()
    ft.compile()
    assert isinstance(ft.optimizer, keras.optimizers.AdamW)
    assert float(keras.ops.convert_to_numpy(ft.optimizer.learning_rate)) == pytest.approx(1e-3)
    assert isinstance(ft.loss, keras.losses.SparseCategoricalCrossentropy)
    ft.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert isinstance(ft.optimizer, keras.optimizers.SGD)
    unfrozen = tiny_tuner(unfreeze="all")
    unfrozen.compile()
    assert float(keras.ops.convert_to_numpy(unfrozen.optimizer.learning_rate)) == pytest.approx(1e-4)


def test_tf_data_input():
    import tensorflow as tf

    x, y = _separable(16)
    ds = tf.data.Dataset.from_tensor_slices((x, (y == "bright").astype("int32"))).batch(8)
    ft = tiny_tuner()
    history = ft.fit(ds, epochs=1, verbose=0)
    assert "loss" in history.history
    assert ft.predict(ds.map(lambda a, b: a), verbose=0).shape == (16, 2)
