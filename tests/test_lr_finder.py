import numpy as np
import pytest

from tests.conftest import tiny_tuner


def _data(n=32, size=16):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.integers(0, 100, (n, size, size, 3)) + 150 * y[:, None, None, None]
    return x.astype("uint8"), y


def test_find_lr_restores_weights_and_optimizer_state(tmp_path):
    x, y = _data()
    ft = tiny_tuner(unfreeze="all")
    ft.compile()
    ft.fit(x, y, epochs=1, batch_size=8, verbose=0)  # optimizer state exists
    weights = [v.numpy().copy() for v in ft.variables]
    optimizer_state = [v.numpy().copy() for v in ft.optimizer.variables]
    result = ft.find_lr(x, y, start_lr=1e-6, end_lr=10.0, num_steps=30, batch_size=8, seed=0)
    for before, variable in zip(weights, ft.variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())
    for before, variable in zip(optimizer_state, ft.optimizer.variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())
    assert 2 <= len(result.learning_rates) == len(result.losses) <= 30
    assert result.learning_rates[0] == pytest.approx(1e-6)
    assert np.all(np.diff(result.learning_rates) > 0)
    assert result.learning_rates[0] <= result.suggestion <= result.learning_rates[-1]
    assert result.suggestion_min > 0
    pytest.importorskip("matplotlib")
    result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0


def test_find_lr_full_sweep_and_errors():
    x, y = _data(16)
    ft = tiny_tuner()
    result = ft.find_lr(x, y, start_lr=1e-5, end_lr=1e-3, num_steps=5, batch_size=4)
    assert len(result.losses) == 5
    assert result.learning_rates[-1] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="start_lr"):
        ft.find_lr(x, y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_steps"):
        ft.find_lr(x, y, num_steps=1)
