"""Head regularisation (`kernel_regularizer` / `l1` / `l2`) and `fit(early_stopping=N)`."""

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.conftest import tiny_tuner

X = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)).astype("uint8")
Y = np.array([0, 1] * 4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: fk.ClassificationHead(2, hidden_units=(4,), l2=0.5),
        lambda: fk.RegressionHead(units=1, kernel_regularizer=keras.regularizers.L1(0.5)),
        lambda: fk.TokenClassificationHead(3, kernel_regularizer="l2"),
    ],
    ids=["classification_l2", "regression_l1", "token_named"],
)
def test_every_dense_kernel_is_regularized_and_config_round_trips(make):
    head = make()
    dense = [*head.hidden_layers, head.output_dense]
    assert all(layer.kernel_regularizer is not None for layer in dense)
    # Each layer has its own regularizer object with the head's settings.
    assert len({id(layer.kernel_regularizer) for layer in dense}) == len(dense)
    restored = type(head).from_config(head.get_config())
    for a, b in zip(dense, [*restored.hidden_layers, restored.output_dense]):
        assert type(a.kernel_regularizer) is type(b.kernel_regularizer)
        assert a.kernel_regularizer.get_config() == b.kernel_regularizer.get_config()


def test_penalty_is_in_the_training_loss_and_survives_saving(tmp_path):
    plain = tiny_tuner(fk.ClassificationHead(2))
    strong = tiny_tuner(fk.ClassificationHead(2, l2=10.0))
    strong.set_weights(plain.get_weights())
    base = plain.evaluate(X, Y, verbose=0, return_dict=True)["loss"]
    penalised = strong.evaluate(X, Y, verbose=0, return_dict=True)["loss"]
    kernel = strong.head.output_dense.kernel.numpy()
    assert penalised == pytest.approx(base + 10.0 * float(np.sum(kernel**2)), rel=1e-3)
    strong.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.head.l2 == 10.0
    assert loaded.head.output_dense.kernel_regularizer.get_config()["l2"] == pytest.approx(10.0)
    assert len(loaded.losses) == 1  # the penalty of the one dense kernel


def test_early_stopping_stops_on_validation_loss_and_restores_the_best_weights():
    ft = tiny_tuner()
    ft.compile(learning_rate=0.05)
    # Validation labels are the opposite of the training labels: val_loss worsens
    # as training improves, so training stops after `patience` bad epochs.
    history = ft.fit(
        X, Y, epochs=20, validation_data=(X, 1 - Y), early_stopping=2, verbose=0,
        cache_features=False,
    )
    epochs = len(history.history["val_loss"])
    assert epochs < 20
    best = int(np.argmin(history.history["val_loss"]))
    assert epochs == best + 3  # patience 2 after the best epoch
    restored = ft.evaluate(X, 1 - Y, verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(history.history["val_loss"][best], rel=1e-4)

