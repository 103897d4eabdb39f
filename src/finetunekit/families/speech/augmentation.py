"""Training-only audio augmentation: noise, gain, time shift (waveforms) and SpecAugment masks.

`audio_augmentation({"noise": 0.1, "gain_db": 6, "time_shift": 0.1,
"spec_mask": True})` returns Keras layers; each has a `stage`: `"waveform"`
layers run on the raw audio before the in-model featurizer, `"spectrogram"`
layers on its log-mel features. All are no-ops at inference time.
"""

import keras
import numpy as np
from keras import ops

#: Keyword -> short description, listed in the error for an unknown keyword.
AUDIO_AUGMENT_KEYWORDS = {
    "noise": "white-noise level relative to the clip's RMS, e.g. 0.1",
    "gain_db": "maximum random gain in dB either way, e.g. 6",
    "time_shift": "maximum circular shift as a fraction of the clip, e.g. 0.1",
    "spec_mask": "True (2 frequency and 2 time masks) or False",
    "seed": "int",
}


def _number(key, value, high):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{key}` must be a number in [0, {high}]. Received: {key}={value!r}")
    if not 0 <= value <= high:
        raise ValueError(f"`{key}` must be a number in [0, {high}]. Received: {key}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="finetunekit")
class WaveformAugmentation(keras.layers.Layer):
    """Random white noise, gain and circular time shift of `(batch, samples, channels)` audio.

    Args:
        noise: float. Noise standard deviation relative to each clip's RMS.
        gain_db: float. Gains are drawn uniformly in `[-gain_db, gain_db]` dB.
        time_shift: float. Shifts of up to this fraction of the batch length.
        seed: int or None.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Audio of the input's shape (unchanged when `training` is false).

    Example:
    ```python
    layer = WaveformAugmentation(noise=0.1, gain_db=6)
    noisy = layer(np.zeros((2, 16000, 1)), training=True)
    ```
    """

    stage = "waveform"

    def __init__(self, noise=0.0, gain_db=0.0, time_shift=0.0, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.noise = _number("noise", noise, 10)
        self.gain_db = _number("gain_db", gain_db, 60)
        self.time_shift = _number("time_shift", time_shift, 1)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, audio, training=None):
        if not training:
            return audio
        audio = ops.cast(audio, "float32")
        batch = ops.shape(audio)[0]
        if self.time_shift:
            samples = ops.shape(audio)[1]
            most = ops.cast(ops.cast(samples, "float32") * self.time_shift, "int32") + 1
            shift = keras.random.randint((), 0, most, seed=self.seed_generator)
            audio = ops.roll(audio, shift, axis=1)
        if self.gain_db:
            gain = keras.random.uniform(
                (batch, 1, 1), -self.gain_db, self.gain_db, seed=self.seed_generator
            )
            audio = audio * ops.power(10.0, gain / 20.0)
        if self.noise:
            rms = ops.sqrt(ops.mean(ops.square(audio), axis=(1, 2), keepdims=True) + 1e-12)
            audio = audio + self.noise * rms * keras.random.normal(
                ops.shape(audio), seed=self.seed_generator
            )
        return audio

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(), "noise": self.noise, "gain_db": self.gain_db,
            "time_shift": self.time_shift, "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="finetunekit")
class SpecMask(keras.layers.Layer):
    """SpecAugment masks: random frequency bands and time spans of log-mel features set to their minimum.

    Args:
        frequency_masks: int. Masks along the mel axis. Defaults to 2.
        max_frequency: int. Widest frequency mask in bands. Defaults to 8.
        time_masks: int. Masks along time. Defaults to 2.
        max_time: float. Widest time mask as a fraction of the frames. Defaults to 0.1.
        seed: int or None.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Features of the input's shape (unchanged when `training` is false).

    Example:
    ```python
    masked = SpecMask()(np.zeros((2, 100, 80)), training=True)
    ```
    """

    stage = "spectrogram"

    def __init__(self, frequency_masks=2, max_frequency=8, time_masks=2, max_time=0.1, seed=None,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.frequency_masks = int(frequency_masks)
        self.max_frequency = int(max_frequency)
        self.time_masks = int(time_masks)
        self.max_time = float(max_time)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _mask(self, size, widest, count):
        """`(batch, size)` true where one of `count` random spans of up to `widest` covers."""
        masked = ops.zeros((size,), dtype="bool")
        positions = ops.arange(size, dtype="float32")
        for _ in range(count):
            width = keras.random.uniform((), 0, widest, seed=self.seed_generator)
            start = keras.random.uniform((), 0, 1, seed=self.seed_generator)
            start = start * ops.maximum(ops.cast(size, "float32") - width, 0.0)
            masked = masked | ((positions >= start) & (positions < start + width))
        return masked

    def call(self, features, training=None):
        if not training:
            return features
        frames = ops.shape(features)[1]
        bands = features.shape[-1]
        time = self._mask(frames, ops.cast(frames, "float32") * self.max_time, self.time_masks)
        freq = self._mask(bands, float(self.max_frequency), self.frequency_masks)
        masked = time[None, :, None] | freq[None, None, :]
        floor = ops.min(features, axis=(1, 2), keepdims=True)
        return ops.where(masked, floor, features)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(), "frequency_masks": self.frequency_masks,
            "max_frequency": self.max_frequency, "time_masks": self.time_masks,
            "max_time": self.max_time, "seed": self.seed,
        }


def is_audio_augment(augment):
    """True for a non-empty keyword dict whose keywords are all audio keywords."""
    return isinstance(augment, dict) and bool(augment) and set(augment) <= set(AUDIO_AUGMENT_KEYWORDS)


def audio_augmentation(augment):
    """Builds audio augmentation layers from `FineTuner(augment={...})` keywords.

    Args:
        augment: dict with `noise`, `gain_db`, `time_shift`, `spec_mask`, `seed`.

    Returns:
        A list of layers: a `WaveformAugmentation` (if any waveform keyword is
        set) and a `SpecMask` (if `spec_mask`).

    Example:
    ```python
    layers = audio_augmentation({"noise": 0.1, "spec_mask": True})
    ```
    """
    seed = augment.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"`seed` must be a whole number or None. Received: seed={seed!r}")
    mask = augment.get("spec_mask", False)
    if not isinstance(mask, (bool, np.bool_)):
        raise ValueError(f"`spec_mask` must be True or False. Received: spec_mask={mask!r}")
    wave = {key: augment[key] for key in ("noise", "gain_db", "time_shift") if augment.get(key)}
    layers = [WaveformAugmentation(**wave, seed=seed)] if wave else []
    if mask:
        layers.append(SpecMask(seed=seed))
    return layers
