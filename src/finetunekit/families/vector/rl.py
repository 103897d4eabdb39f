"""Policy fine-tuning from demonstrations (behaviour cloning) on gymnasium environments.

Behaviour cloning is supervised fine-tuning: states are the inputs, the
expert's actions the class labels. A pretrained policy network (a Keras
model on state vectors) is the backbone and `fk.ClassificationHead` the
action head:

```python
states, actions = fk.rl.collect_demonstrations(expert, env, episodes=5)
bc = fk.FineTuner(backbone=policy_model,
                  head=fk.ClassificationHead(num_classes=env.action_space.n), unfreeze="all")
bc.fit(states, actions, epochs=20)
mean, std = fk.rl.evaluate_policy(bc, env, episodes=20)
```

gymnasium is an optional dependency (`pip install 'finetunekit[rl]'`).
"""

import copy

import numpy as np


def check_env(env):
    """Raises a ValueError unless `env` has a discrete action space and vector observations."""
    actions = getattr(env, "action_space", None)
    if actions is None or not hasattr(env, "reset") or not hasattr(env, "step"):
        raise ValueError(
            "env must be a gymnasium environment (with reset, step and action_space). "
            f"Received: {type(env).__name__}"
        )
    if not hasattr(actions, "n"):
        raise ValueError(
            "Behaviour cloning with a ClassificationHead needs a discrete action space "
            f"(gymnasium.spaces.Discrete); this env has {actions}. Discretise the actions, or "
            "fit a RegressionHead on them and act with your own loop."
        )
    shape = getattr(getattr(env, "observation_space", None), "shape", None)
    if shape is None or len(shape) != 1:
        raise ValueError(
            f"The env's observations must be vectors (a 1-D Box); they have shape {shape}."
        )


def act(policy, states, num_actions=None):
    """Actions of `policy` for a batch of states.

    Args:
        policy: a `FineTuner` or `keras.Model` (the argmax of its outputs is
            the action), or a callable `states -> actions` (e.g. a scripted expert).
        states: float array `(n, features)`.
        num_actions: int or None. The env's number of actions, to check them.

    Returns:
        An int array of `n` actions.
    """
    import keras

    states = np.asarray(states, "float32")
    if isinstance(policy, keras.Model) and hasattr(policy, "prepare"):  # a FineTuner: its pipeline checks the states
        states = policy.prepare(states, None, require_labels=False).train.x
    if isinstance(policy, keras.Model):
        outputs = keras.ops.convert_to_numpy(policy(states, training=False))
        if num_actions is not None and outputs.shape[-1] != num_actions:
            raise ValueError(
                f"The policy model gives {outputs.shape[-1]} outputs per state but the env has "
                f"{num_actions} actions; its last layer needs {num_actions} units."
            )
        return np.argmax(outputs, axis=-1).astype("int64")
    if not callable(policy):
        raise ValueError(
            "policy must be a FineTuner, a keras.Model or a callable states -> actions. "
            f"Received: {type(policy).__name__}"
        )
    return _check_actions(np.asarray(policy(states)), len(states), num_actions)


def _check_actions(actions, count, num_actions):
    """A callable policy's actions as ints, or a clear error: one whole action id per state."""
    if actions.size != count:
        raise ValueError(
            f"The policy returned an array of shape {actions.shape} for {count} states; it must "
            "return one action per state."
        )
    actions = actions.reshape(count)
    numeric = actions.dtype.kind in "iuf"
    fractional = actions[actions != np.round(actions)] if actions.dtype.kind == "f" else []
    if not numeric or len(fractional):
        bad = (fractional if len(fractional) else actions).tolist()[0]
        raise ValueError(
            f"The policy returned {bad!r}, not an action id: a discrete env takes whole numbers "
            "0..n-1. Return ints (e.g. int(value > 0.5)), not probabilities or scores."
        )
    if num_actions is not None and count and (actions.min() < 0 or actions.max() >= num_actions):
        bad = actions[(actions < 0) | (actions >= num_actions)][0]
        raise ValueError(
            f"The policy returned action {bad:g}, outside the env's {num_actions} actions "
            f"(0..{num_actions - 1})."
        )
    return actions.astype("int64")


def check_policy(policy, env):
    """Raises a ValueError for a FineTuner that cannot choose `env`'s actions."""
    head = getattr(policy, "head", None)
    if head is None:
        return
    if getattr(head, "multi_label", False) or not hasattr(head, "num_classes"):
        raise ValueError(
            "A policy FineTuner needs a single-label fk.ClassificationHead (one class per "
            f"action); this one has {type(head).__name__}."
        )
    if head.num_classes != env.action_space.n:
        raise ValueError(
            f"The policy chooses among {head.num_classes} actions but the env has "
            f"{env.action_space.n}. Use ClassificationHead(num_classes=env.action_space.n)."
        )


def _check_episodes(episodes):
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"`episodes` must be a positive int. Received: episodes={episodes!r}")
    return int(episodes)


def run_episodes(policy, env, episodes, seed=0, max_steps=None):
    """Plays `episodes` episodes side by side (copies of `env`), acting in batches.

    Returns:
        `(returns, states, actions)`: one return per episode, and every
        visited state with the action taken in it.
    """
    check_env(env)
    check_policy(policy, env)
    episodes = _check_episodes(episodes)
    envs = [copy.deepcopy(env) for _ in range(episodes)]
    observations = [e.reset(seed=None if seed is None else seed + i)[0] for i, e in enumerate(envs)]
    returns = np.zeros(episodes)
    alive = list(range(episodes))
    states, actions = [], []
    steps = 0
    while alive and (max_steps is None or steps < max_steps):
        batch = np.stack([observations[i] for i in alive]).astype("float32")
        chosen = act(policy, batch, env.action_space.n)
        states.append(batch)
        actions.append(chosen)
        still = []
        for i, action in zip(alive, chosen):
            observations[i], reward, terminated, truncated, _ = envs[i].step(int(action))
            returns[i] += reward
            if not (terminated or truncated):
                still.append(i)
        alive = still
        steps += 1
    for e in envs:
        e.close()
    return returns, np.concatenate(states), np.concatenate(actions)


def collect_demonstrations(expert, env, episodes, seed=0, max_steps=None):
    """Plays the expert in `env` and records `(states, actions)` for behaviour cloning.

    Args:
        expert: a callable `states -> actions` (a batch of states in, one
            action per state out), a `FineTuner` or a `keras.Model`.
        env: a gymnasium environment with a discrete action space.
        episodes: int. Number of episodes.
        seed: int or None. Episode `i` is reset with `seed + i`. Defaults to 0.
        max_steps: int or None. Stop every episode after this many steps.

    Returns:
        `(states, actions)`: a float32 `(n, features)` array and an int
        `(n,)` array, ready for `FineTuner.fit(states, actions)`.

    Example:
    ```python
    env = gymnasium.make("CartPole-v1")
    expert = lambda s: (s[:, 2] + 0.5 * s[:, 3] > 0).astype(int)   # push toward the lean
    states, actions = fk.rl.collect_demonstrations(expert, env, episodes=5)
    ```
    """
    _, states, actions = run_episodes(expert, env, episodes, seed, max_steps)
    return states, actions


def evaluate_policy(policy, env, episodes=20, seed=1000, max_steps=None):
    """Mean and standard deviation of a policy's return over `episodes` episodes.

    Args:
        policy: a `FineTuner` (e.g. behaviour-cloned with a
            `ClassificationHead`: the action is the argmax), a `keras.Model`
            or a callable `states -> actions`.
        env: a gymnasium environment with a discrete action space.
        episodes: int. Defaults to 20.
        seed: int or None. Episode `i` is reset with `seed + i`. Defaults to 1000.
        max_steps: int or None. Stop every episode after this many steps.

    Returns:
        `(mean, std)` of the episode returns, as floats.

    Example:
    ```python
    mean, std = fk.rl.evaluate_policy(bc, env, episodes=20)
    ```
    """
    returns, _, _ = run_episodes(policy, env, episodes, seed, max_steps)
    return float(np.mean(returns)), float(np.std(returns))
