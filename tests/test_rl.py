"""Behaviour cloning: a policy network on CartPole states fine-tuned from expert demonstrations."""

import keras
import numpy as np
import pytest

import finetunekit as fk

gymnasium = pytest.importorskip("gymnasium")


def expert(states):
    """A scripted CartPole controller: push toward where the pole is falling."""
    return (states[:, 2] + 0.5 * states[:, 3] > 0).astype("int64")


def policy_model():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(16, activation="tanh", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(16, activation="tanh", name="top")(hidden))


def test_behaviour_cloning_on_cartpole(tmp_path):
    env = gymnasium.make("CartPole-v1")
    states, actions = fk.rl.collect_demonstrations(expert, env, episodes=2, max_steps=200)
    assert states.shape[1] == 4 and len(states) == len(actions) and set(actions) == {0, 1}
    expert_mean, _ = fk.rl.evaluate_policy(expert, env, episodes=2, max_steps=200)
    assert expert_mean == 200.0
    keras.utils.set_random_seed(0)
    bc = fk.FineTuner(backbone=policy_model(), head=fk.ClassificationHead(env.action_space.n),
                      unfreeze="all")
    assert bc.backbone_kind.name == "vector_model"
    bc.compile(learning_rate=1e-2)
    bc.fit(states, actions, epochs=10, batch_size=32, verbose=0)
    agreement = np.mean(bc.predict_labels(states) == actions)
    assert agreement > 0.75  # expert states sit near its decision boundary
    mean, std = fk.rl.evaluate_policy(bc, env, episodes=3, max_steps=200)
    assert mean > 100 and std >= 0.0  # a random policy balances about 20 steps
    bc.save(str(tmp_path / "bc.keras"))
    loaded = fk.load(str(tmp_path / "bc.keras"))
    assert fk.rl.evaluate_policy(loaded, env, episodes=3, max_steps=200) == (mean, std)
    assert bc.set_unfreeze(1) == ["top"]
