"""Data-parallel training with `tf.distribute` strategies."""

import contextlib

import keras

from finetunekit.core._keras_compat import (  # noqa: F401 - first_replica_batch: re-exported
    first_replica_batch,
    in_multi_worker_mode,
)


def resolve_distribution(distribution):
    """Maps a `FineTuner(distribution=...)` argument to a `tf.distribute.Strategy`.

    Args:
        distribution: None (the strategy whose scope is active, if any),
            `"mirrored"` (`tf.distribute.MirroredStrategy` over this machine's
            GPUs), `"multi_worker"` (`tf.distribute.MultiWorkerMirroredStrategy`,
            cluster read from `TF_CONFIG`; only before any other TensorFlow
            work in the process) or a `tf.distribute.Strategy`.

    Returns:
        A `tf.distribute.Strategy`, or None for None.

    Example:
    ```python
    strategy = resolve_distribution("mirrored")
    strategy.num_replicas_in_sync  # the number of GPUs (1 on a CPU-only machine)
    ```
    """
    if distribution is None:
        return None
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "`distribution` takes tf.distribute strategies, which need the TensorFlow backend "
            f"(KERAS_BACKEND={keras.backend.backend()!r}). With JAX, use "
            "keras.distribution.set_distribution(...) before building the FineTuner."
        )
    import tensorflow as tf

    if isinstance(distribution, tf.distribute.Strategy):
        return distribution
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribution == "multi_worker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise RuntimeError(
                f"{error}. TensorFlow sets up multi-worker collectives once, before any other "
                "TensorFlow work: create `strategy = tf.distribute.MultiWorkerMirroredStrategy()` "
                "at the start of your program and pass `distribution=strategy`."
            ) from error
    raise ValueError(
        f'`distribution` must be None, "mirrored", "multi_worker" or a tf.distribute.Strategy. '
        f"Received: distribution={distribution!r}"
    )


def strategy_scope(strategy):
    """Returns `strategy.scope()`, or a no-op context for None."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def adopt_model(strategy, model):
    """Returns `model` with its variables owned by `strategy`.

    A model built outside `strategy.scope()` has ordinary variables, which a
    distributed `fit` cannot mirror. Such a model is rebuilt from its config
    inside the scope and given the same weights; one built in the scope is
    returned as is.

    Args:
        strategy: a `tf.distribute.Strategy` or None.
        model: a `keras.Model` or anything else (returned unchanged).

    Returns:
        A `keras.Model` whose variables belong to `strategy`.
    """
    if strategy is None or not isinstance(model, keras.Model) or not model.weights:
        return model
    if strategy.extended.variable_created_in_scope(model.weights[0].value):
        return model
    try:
        with strategy.scope():
            clone = type(model).from_config(model.get_config())
    except (NotImplementedError, TypeError, ValueError) as error:
        raise ValueError(
            f"The backbone {model.name!r} was built outside the distribution strategy's scope "
            "and cannot be rebuilt from its config. Build it inside `strategy.scope()` and "
            "pass that strategy as `distribution=`."
        ) from error
    clone.set_weights(model.get_weights())
    return clone


def is_multi_worker(strategy):
    """True for a `MultiWorkerMirroredStrategy` that spans more than this process."""
    if strategy is None or keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return in_multi_worker_mode(strategy)


def logs_for_multi_worker(strategy, logs):
    """Gives each scalar of a train/test step's logs a leading axis of 1 across workers.

    Keras averages the per-replica logs of a multi-worker step with
    `strategy.reduce("MEAN", value, axis=0)`, which needs that axis
    (keras-team/keras#20585); the mean over it is the scalar Keras reports
    on one machine. Other strategies get the logs unchanged.
    """
    if not is_multi_worker(strategy):
        return logs
    import tensorflow as tf

    def add_axis(value):
        if isinstance(value, tf.Tensor | tf.Variable) and value.shape.rank == 0:
            return tf.reshape(value, [1])
        return value

    return tf.nest.map_structure(add_axis, logs)
