"""Benchmark: behaviour cloning a CartPole policy, pretrained on another pole length.

Source variant: the standard CartPole-v1 (half pole length 0.5), where a
full-state linear controller is the expert. Target variant: a pole four times
longer (2.0), where that controller fails within ~20 steps and a different
one (pole angle and angular velocity only) balances. A policy network
(2 x 32 tanh, `fk.ClassificationHead(2)`) is behaviour-cloned on many source
demonstrations; on the target, with a few expert episodes:

- pretrained only: the source policy as it is;
- fine-tuned: `FineTuner(backbone=<the pretrained body>, head=fk.ClassificationHead(2),
  unfreeze="all")` trained on the target demonstrations (learning rate 3e-3);
- fine-tuned, head only: the same with the body frozen (`unfreeze=0`, learning rate 1e-2);
- from scratch: the same network with random weights, trained on the same demonstrations.

Each is scored with `fk.rl.evaluate_policy` (mean return over episodes,
500 at most), averaged over `--seeds` seeds.

Usage:
    python benchmarks/behaviour_cloning.py --demos 1,2,5 --seeds 3
"""

import argparse
import sys

import numpy as np

SOURCE_EXPERT = np.array([0.1, 0.5, 2.0, 0.6])  # cart position, velocity, pole angle, angular velocity
TARGET_EXPERT = np.array([0.0, 0.0, 1.0, 0.5])


def make_env(length):
    """CartPole-v1 with half pole length `length` (the physics constants derived from it updated)."""
    import gymnasium

    env = gymnasium.make("CartPole-v1")
    physics = env.unwrapped
    physics.length = length
    physics.polemass_length = physics.masspole * length
    return env


def linear_expert(gains):
    return lambda states: (np.asarray(states) @ gains > 0).astype("int64")


def body(seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,), name="state")
    x = keras.layers.Dense(32, activation="tanh", name="hidden_1")(inputs)
    x = keras.layers.Dense(32, activation="tanh", name="hidden_2")(x)
    return keras.Model(inputs, x, name="policy_body")


def clone(model):
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def behaviour_clone(fk, backbone, states, actions, epochs, seed, unfreeze="all"):
    import keras

    keras.utils.set_random_seed(seed)
    policy = fk.FineTuner(backbone=backbone, head=fk.ClassificationHead(2), unfreeze=unfreeze)
    policy.compile(learning_rate=3e-3 if unfreeze else 1e-2)
    policy.fit(states, actions, epochs=epochs, batch_size=64, verbose=0)
    return policy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-episodes", type=int, default=20)
    parser.add_argument("--demos", default="1,2,5", help="target expert episodes (a list)")
    parser.add_argument("--demo-steps", type=int, default=200, help="steps per demonstration")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import gymnasium  # noqa: F401
    except ImportError:
        sys.exit("gymnasium is needed: pip install 'finetunekit[rl]'")
    import finetunekit as fk

    source, target = make_env(0.5), make_env(2.0)
    score = lambda policy, env: fk.rl.evaluate_policy(policy, env, args.episodes)[0]  # noqa: E731
    print(f"experts: source controller on source {score(linear_expert(SOURCE_EXPERT), source):.1f}, "
          f"on target {score(linear_expert(SOURCE_EXPERT), target):.1f}; target controller on "
          f"target {score(linear_expert(TARGET_EXPERT), target):.1f} (mean return, max 500)")
    states, actions = fk.rl.collect_demonstrations(
        linear_expert(SOURCE_EXPERT), source, args.source_episodes
    )
    results = {}
    for seed in range(args.seeds):
        pretrained = behaviour_clone(fk, body(seed), states, actions, args.epochs, seed)
        results.setdefault(("pretrained only", 0), []).append(score(pretrained, target))
        results.setdefault(("pretrained, on source", 0), []).append(score(pretrained, source))
        for demos in (int(d) for d in args.demos.split(",")):
            demo_states, demo_actions = fk.rl.collect_demonstrations(
                linear_expert(TARGET_EXPERT), target, demos, seed=100 + 10 * seed,
                max_steps=args.demo_steps,
            )
            tuned = behaviour_clone(fk, clone(pretrained.backbone), demo_states, demo_actions,
                                    args.epochs, seed)
            head_only = behaviour_clone(fk, clone(pretrained.backbone), demo_states, demo_actions,
                                        args.epochs, seed, unfreeze=0)
            scratch = behaviour_clone(fk, body(seed + 1000), demo_states, demo_actions,
                                      args.epochs, seed)
            results.setdefault(("fine-tuned", demos), []).append(score(tuned, target))
            results.setdefault(("fine-tuned, head only", demos), []).append(
                score(head_only, target))
            results.setdefault(("from scratch", demos), []).append(score(scratch, target))
    print(f"source demonstrations: {len(states)} states ({args.source_episodes} episodes); "
          f"target demonstrations: up to {args.demo_steps} steps each; {args.epochs} epochs; "
          f"{args.seeds} seeds; {args.episodes} evaluation episodes")
    print(f"{'policy':<24}{'target demos':>13}{'mean return':>13}{'min':>8}{'max':>8}")
    for (name, demos), values in results.items():
        print(f"{name:<24}{demos:>13}{np.mean(values):>13.1f}{np.min(values):>8.1f}"
              f"{np.max(values):>8.1f}")


if __name__ == "__main__":
    main()
