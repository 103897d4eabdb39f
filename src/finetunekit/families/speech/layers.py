"""In-model audio preprocessing: mono, resampling, Whisper-style log-mel features or waveforms.

`AudioFeaturizer` is the audio converter that lives inside a saved
`FineTuner`: it takes raw waveforms padded per batch (`audio`, shape
`(batch, samples, channels)`), the number of real samples of each clip
(`audio_length`) and the clips' sample rate (`sample_rate`), and returns
log-mel features and a per-frame padding mask. `WaveformConverter` is its
counterpart for backbones that read waveforms (Moonshine): mono 16 kHz
waveforms and a per-sample mask. Everything is `keras.ops`, so serving equals
training.
"""

import keras
import numpy as np
from keras import ops

from finetunekit.families.speech.resampling import resample


def whisper_mel_filters(num_mels=80, num_fft_bins=400, sampling_rate=16000):
    """The Slaney mel filterbank of Whisper, `(num_fft_bins // 2 + 1, num_mels)` float32.

    Args:
        num_mels: int. Number of mel bands.
        num_fft_bins: int. FFT size.
        sampling_rate: int. Sample rate in Hz.

    Returns:
        A NumPy array.

    Example:
    ```python
    whisper_mel_filters().shape  # (201, 80)
    ```
    """
    fft_freqs = np.fft.rfftfreq(n=num_fft_bins, d=1.0 / sampling_rate)
    mels = np.linspace(0.0, 45.245640471924965, num_mels + 2)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    freqs = f_sp * mels
    log_region = mels >= min_log_mel
    freqs[log_region] = min_log_hz * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - min_log_mel))
    widths = np.diff(freqs)
    ramps = np.subtract.outer(freqs, fft_freqs)
    weights = np.zeros((num_mels, len(fft_freqs)))
    for i in range(num_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2 : num_mels + 2] - freqs[:num_mels]))[:, None]
    return weights.T.astype("float32")


@keras.saving.register_keras_serializable(package="finetunekit")
class AudioFeaturizer(keras.layers.Layer):
    """Raw waveforms -> Whisper log-mel features and a frame padding mask.

    Mixes channels to mono, resamples linearly from the batch's sample rate
    (the first example's; a batch shares one rate) to `sampling_rate`, and
    computes the log10 mel spectrogram of Whisper's converter (Hann window,
    reflect padding, dynamic range of 8, `(x + 4) / 4`). Clips are padded per
    batch; the mask marks the frames of real audio.

    Args:
        num_mels: int. Mel bands. Defaults to 80.
        num_fft_bins: int. FFT size. Defaults to 400.
        stride: int. Hop between frames in samples. Defaults to 160.
        sampling_rate: int. Rate the backbone expects. Defaults to 16000.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        `(features, frame_mask)`: `(batch, frames, num_mels)` float32 and
        `(batch, frames)` bool.

    Example:
    ```python
    layer = AudioFeaturizer()
    features, mask = layer(np.zeros((2, 16000, 1)), np.array([16000, 8000]),
                           np.array([16000, 16000]))
    ```
    """

    def __init__(self, num_mels=80, num_fft_bins=400, stride=160, sampling_rate=16000, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_mels = int(num_mels)
        self.num_fft_bins = int(num_fft_bins)
        self.stride = int(stride)
        self.sampling_rate = int(sampling_rate)
        self.mel_filters = whisper_mel_filters(self.num_mels, self.num_fft_bins, self.sampling_rate)
        n = np.arange(self.num_fft_bins)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.num_fft_bins)  # periodic Hann
        angle = 2 * np.pi * np.outer(n, np.arange(self.num_fft_bins // 2 + 1)) / self.num_fft_bins
        self.dft_basis = ((window[:, None] * np.cos(angle)).astype("float32"),
                          (window[:, None] * np.sin(angle)).astype("float32"))

    def call(self, audio, audio_length, sample_rate):
        audio = ops.mean(ops.cast(audio, "float32"), axis=-1, keepdims=True)
        rate = ops.reshape(sample_rate, (-1,))[0]
        audio, ratio = resample(audio, rate, self.sampling_rate)
        audio = audio[..., 0]
        length = ops.ceil(ops.cast(ops.reshape(audio_length, (-1,)), "float32") * ratio)
        power = self._power_spectrum(audio)[:, :-1, :]
        mel = ops.matmul(power, ops.convert_to_tensor(self.mel_filters))
        log_spec = ops.log10(ops.maximum(mel, 1e-10))
        frames = ops.shape(log_spec)[1]
        valid = ops.ceil(length / self.stride)
        mask = ops.arange(frames, dtype="float32")[None, :] < valid[:, None]
        peak = ops.max(ops.where(ops.expand_dims(mask, -1), log_spec, -10.0), axis=(1, 2),
                       keepdims=True)  # expand_dims, not [..., None]: a TFLite builtin
        log_spec = ops.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0, mask

    def _power_spectrum(self, audio):
        """`|STFT|^2` (Hann window, reflect padding) as a matmul with a windowed DFT basis.

        The same numbers as `ops.stft`; a matmul instead of an FFT because
        TFLite's FFT takes power-of-two lengths only (Whisper's is 400).
        """
        size, half = self.num_fft_bins, self.num_fft_bins // 2
        audio = ops.pad(audio, [[0, 0], [half, half]], mode="reflect")
        frames = (ops.shape(audio)[1] - size) // self.stride + 1
        index = ops.arange(frames)[:, None] * self.stride + ops.arange(size)[None, :]
        framed = ops.take(audio, index, axis=1)  # (batch, frames, size)
        real = ops.matmul(framed, ops.convert_to_tensor(self.dft_basis[0]))
        imag = ops.matmul(framed, ops.convert_to_tensor(self.dft_basis[1]))
        return ops.square(real) + ops.square(imag)

    def compute_output_shape(self, audio_shape, audio_length_shape=None, sample_rate_shape=None):
        return (audio_shape[0], None, self.num_mels), (audio_shape[0], None)

    def get_config(self):
        return {
            **super().get_config(), "num_mels": self.num_mels, "num_fft_bins": self.num_fft_bins,
            "stride": self.stride, "sampling_rate": self.sampling_rate,
        }


@keras.saving.register_keras_serializable(package="finetunekit")
class WaveformConverter(keras.layers.Layer):
    """Raw waveforms -> mono waveforms at the backbone's rate and a sample padding mask.

    The in-model converter of backbones that read waveforms directly
    (Moonshine): it follows keras-hub's `MoonshineAudioConverter` (16 kHz mono,
    zero padding, optional zero-mean unit-variance normalisation), mixing
    channels to mono and resampling linearly from the batch's sample rate
    first. Normalisation uses each clip's real samples only, and padding stays
    zero, so a clip gives the same output whatever it is batched with.

    Args:
        sampling_rate: int. Rate the backbone expects. Defaults to 16000.
        do_normalize: bool. Normalise each clip to zero mean and unit variance.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        `(waveform, sample_mask)`: `(batch, samples, 1)` float32 and
        `(batch, samples)` bool.

    Example:
    ```python
    layer = WaveformConverter()
    wave, mask = layer(np.zeros((2, 8000, 2)), np.array([8000, 4000]), np.array([8000, 8000]))
    ```
    """

    def __init__(self, sampling_rate=16000, do_normalize=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.sampling_rate = int(sampling_rate)
        self.do_normalize = bool(do_normalize)

    def call(self, audio, audio_length, sample_rate):
        audio = ops.mean(ops.cast(audio, "float32"), axis=-1, keepdims=True)
        rate = ops.reshape(sample_rate, (-1,))[0]
        audio, ratio = resample(audio, rate, self.sampling_rate)
        length = ops.ceil(ops.cast(ops.reshape(audio_length, (-1,)), "float32") * ratio)
        mask = ops.arange(ops.shape(audio)[1], dtype="float32")[None, :] < length[:, None]
        weight = ops.cast(mask, "float32")[..., None]
        audio = audio * weight
        if self.do_normalize:
            count = ops.maximum(ops.sum(weight, axis=1, keepdims=True), 1.0)
            mean = ops.sum(audio, axis=1, keepdims=True) / count
            var = ops.sum(ops.square(audio - mean) * weight, axis=1, keepdims=True) / count
            audio = (audio - mean) / ops.sqrt(var + 1e-7) * weight
        return audio, mask

    def compute_output_shape(self, audio_shape, audio_length_shape=None, sample_rate_shape=None):
        return (audio_shape[0], None, 1), (audio_shape[0], None)

    def get_config(self):
        return {**super().get_config(), "sampling_rate": self.sampling_rate,
                "do_normalize": self.do_normalize}
