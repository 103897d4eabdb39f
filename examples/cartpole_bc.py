"""Behaviour cloning on CartPole: a policy network fine-tuned from expert demonstrations.

A scripted expert (push toward where the pole is falling) plays a few
episodes; its (state, action) pairs fine-tune a small Keras policy network
with a classification head (one class per action), and `fk.rl.evaluate_policy`
scores the clone by its mean return.

    python examples/cartpole_bc.py --smoke
    python examples/cartpole_bc.py --demos 5 --epochs 30

Extras (checked at start, before any training): gymnasium, for the CartPole environment

    pip install "finetunekit[rl]"
"""

import argparse
import os
import tempfile

import numpy as np
from _extras import check_extras  # noqa: E402  (examples/_extras.py, beside this script)

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {"gymnasium": '"finetunekit[rl]"'}


def expert(states):
    """Pole angle plus half its angular velocity: push right when positive."""
    return (np.asarray(states) @ np.array([0.0, 0.0, 1.0, 0.5]) > 0).astype("int64")


def policy_network():
    import keras

    inputs = keras.Input((4,), name="state")
    x = keras.layers.Dense(32, activation="tanh", name="hidden_1")(inputs)
    return keras.Model(inputs, keras.layers.Dense(32, activation="tanh", name="hidden_2")(x))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=5, help="expert episodes")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="2 short demos, few epochs (CI)")
    args = parser.parse_args(argv)
    check_extras(EXTRAS, __file__)
    import gymnasium
    import keras

    import finetunekit as fk

    keras.utils.set_random_seed(0)
    env = gymnasium.make("CartPole-v1")
    demos, steps, epochs = (2, 100, 10) if args.smoke else (args.demos, None, args.epochs)
    states, actions = fk.rl.collect_demonstrations(expert, env, demos, max_steps=steps)
    print(f"{len(states)} expert states from {demos} episodes")
    bc = fk.FineTuner(backbone=policy_network(),
                      head=fk.ClassificationHead(num_classes=env.action_space.n), unfreeze="all")
    bc.compile(learning_rate=1e-2)
    bc.fit(states, actions, epochs=epochs, batch_size=32, verbose=0)
    episodes = 3 if args.smoke else 20
    mean, std = fk.rl.evaluate_policy(bc, env, episodes=episodes, max_steps=steps)
    print(f"clone: mean return {mean:.1f} +- {std:.1f} over {episodes} episodes")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "policy.keras")
        bc.save(path)
        again = fk.rl.evaluate_policy(fk.load(path), env, episodes=episodes, max_steps=steps)
        print(f"reloaded: mean return {again[0]:.1f} +- {again[1]:.1f} over {episodes} episodes")


if __name__ == "__main__":
    main()
