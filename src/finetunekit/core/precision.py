"""Mixed-precision policy resolution."""

import contextlib

import keras


def _gpu_compute_capability():
    """Returns the first GPU's compute capability `(major, minor)`, or None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("compute_capability", (7, 0))


def resolve_policy(mixed_precision="auto"):
    """Maps a `mixed_precision` argument to a Keras dtype policy name.

    Args:
        mixed_precision: `"auto"` (mixed on a GPU: bfloat16 on compute
            capability >= 8.0, float16 on 7.x; float32 on CPU), `True` /
            `"float16"` / `"mixed_float16"` (float16 compute with loss
            scaling), `"bfloat16"` / `"mixed_bfloat16"`, or `False` /
            `"float32"` / `None`.

    Returns:
        `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.
    """
    value = mixed_precision
    if value is None or value is False or value == "float32":
        return "float32"
    if value is True or value in ("float16", "mixed_float16"):
        return "mixed_float16"
    if value in ("bfloat16", "mixed_bfloat16"):
        return "mixed_bfloat16"
    if value == "auto":
        capability = _gpu_compute_capability()
        if capability is None or capability[0] < 7:
            return "float32"
        return "mixed_bfloat16" if capability[0] >= 8 else "mixed_float16"
    raise ValueError(
        '`mixed_precision` must be "auto", True, False, "float16", "bfloat16" or '
        f'"float32". Received: mixed_precision={mixed_precision!r}'
    )


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Sets Keras' global dtype policy inside the block, restoring it after.

    Used to build `keras.applications` models, which read the global policy.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
