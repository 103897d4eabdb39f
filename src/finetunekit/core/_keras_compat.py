"""The few private Keras internals finetunekit relies on, in one place.

Everything else in finetunekit uses public Keras API. Each function here names
the private attribute it reads and why no public one serves;
`tests/test_keras_compat.py` fails loudly when a Keras upgrade renames or
removes one of them.
"""

import keras

#: The private Keras attributes used below, checked by the compat test.
PRIVATE_MODEL_METHODS = ("_maybe_symbolic_build",)
PRIVATE_OPTIMIZER_METHODS = ("_var_key",)


def optimizer_variable_key(optimizer, variable):
    """The key a Keras optimizer files `variable` under (`optimizer._var_key`).

    Backends hand `update_step` their own variable objects, which carry no
    Keras `path`; the optimizer's own key is the only stable way to match them.
    """
    return optimizer._var_key(variable)


def optimizer_tracks(optimizer, variables):
    """True when a built optimizer holds slots for every variable in `variables`.

    Reads `optimizer._trainable_variables_indices` (no public equivalent).
    """
    if not optimizer.built:
        return False
    known = getattr(optimizer, "_trainable_variables_indices", {})
    return all(optimizer._var_key(v) in known for v in variables)


def distribute_strategy(model):
    """The `tf.distribute` strategy a Keras model was built under, or None.

    Keras stores it as `model._distribute_strategy` (TensorFlow backend only).
    """
    return getattr(model, "_distribute_strategy", None)


def resumed_epoch(model):
    """The epoch `keras.callbacks.BackupAndRestore` resumed from (`model._initial_epoch`), or None."""
    return getattr(model, "_initial_epoch", None)


def forget_resumed_epoch(model):
    """Clears the epoch `BackupAndRestore` set, so that a later `fit` starts at its own epoch."""
    model._initial_epoch = None


def is_validation_inside_fit(evaluate_kwargs):
    """True when `keras.Model.fit` calls `evaluate` for its validation data.

    Keras passes the private `_use_cached_eval_dataset=True` then; the data
    is already prepared and must pass through untouched.
    """
    return bool(evaluate_kwargs.get("_use_cached_eval_dataset"))


def sublayers(layer):
    """Every layer nested in `layer` (itself excluded), depth first (`layer._flatten_layers`).

    `keras.Model.layers` lists only direct children; layers nested inside
    custom layers (a BatchNorm inside a keras-hub block) need the private walk.
    """
    return list(layer._flatten_layers(include_self=False, recursive=True))


class SymbolicBuildFromOneReplica:
    """Mixin: builds optimizer and metrics from one replica's batch under multi-worker training.

    Keras averages one distributed sample batch over replicas in the private
    `Model._maybe_symbolic_build`, which fails under
    `MultiWorkerMirroredStrategy` (keras-team/keras#20585); one replica's batch
    has the shapes and dtypes the build needs.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        from finetunekit.core.distribution import first_replica_batch

        strategy = distribute_strategy(self)
        if strategy is not None and iterator is not None:
            for _, _, batches in iterator:
                data_batch = first_replica_batch(strategy, next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def check_private_api():
    """Raises `RuntimeError` naming every private Keras attribute that is missing.

    Returns:
        The Keras version checked.
    """
    missing = [f"keras.Model.{name}" for name in PRIVATE_MODEL_METHODS if not hasattr(keras.Model, name)]
    optimizer = keras.optimizers.Adam()
    missing += [
        f"keras.optimizers.Optimizer.{name}"
        for name in PRIVATE_OPTIMIZER_METHODS
        if not hasattr(optimizer, name)
    ]
    if not hasattr(keras.layers.Layer, "_flatten_layers"):
        missing.append("keras.layers.Layer._flatten_layers")
    if missing:
        raise RuntimeError(
            f"Keras {keras.__version__} lacks private API finetunekit uses: {', '.join(missing)}. "
            "Update finetunekit/core/_keras_compat.py."
        )
    return keras.__version__
