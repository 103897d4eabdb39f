"""Linear-interpolation resampling of audio, shared by the audio pipeline and the in-model featurizer."""

from keras import ops


def resample(audio, source_rate, target_rate):
    """Linear-interpolation resampling of `(batch, samples, channels)` audio (keras.ops).

    Args:
        audio: float tensor `(batch, samples, channels)`.
        source_rate: scalar int tensor or int. Rate of `audio` in Hz.
        target_rate: int. Wanted rate in Hz.

    Returns:
        `(resampled, ratio)`: the audio at `target_rate` and `target / source`.
    """
    ratio = ops.cast(target_rate, "float32") / ops.cast(source_rate, "float32")
    samples = ops.shape(audio)[1]
    new_samples = ops.cast(ops.ceil(ops.cast(samples, "float32") * ratio), "int32")
    positions = ops.arange(new_samples, dtype="float32") / ratio
    positions = ops.minimum(positions, ops.cast(samples - 1, "float32"))
    low = ops.cast(ops.floor(positions), "int32")
    high = ops.minimum(low + 1, samples - 1)
    weight = ops.reshape(positions - ops.cast(low, "float32"), (1, -1, 1))
    lows = ops.take(audio, low, axis=1)
    highs = ops.take(audio, high, axis=1)
    return lows + (highs - lows) * ops.cast(weight, audio.dtype), ratio
