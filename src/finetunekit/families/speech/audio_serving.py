"""What `ft.export(format="saved_model" / "tflite")` serves for an audio backbone.

A classifier on a Whisper encoder is served on the same raw inputs as the
Keras model: `audio` (float32 `(batch, samples, channels)`, padded with
anything after each clip's end), `audio_length` (int32 `(batch,)`, the real
samples of each clip: padded frames are kept out of the pooling)
and `sample_rate` (int32 `(batch,)`, one rate per batch; resampled to 16 kHz
inside). For speech to text the same inputs go to the head's greedy
transcription graph (`finetunekit.families.speech.serving`).
"""


def serving_signature(kind):
    """`{name: tf.TensorSpec}` of the raw serving inputs of an audio backbone kind.

    Args:
        kind: an `AudioBackbone` after `build`.

    Returns:
        An ordered dict: `audio`, `audio_length`, `sample_rate`.

    Example:
    ```python
    serving_signature(ft.backbone_kind)["audio"].shape  # (None, None, None)
    ```
    """
    import tensorflow as tf

    del kind  # every audio kind takes the same raw inputs
    return {
        "audio": tf.TensorSpec((None, None, None), tf.float32, name="audio"),
        "audio_length": tf.TensorSpec((None,), tf.int32, name="audio_length"),
        "sample_rate": tf.TensorSpec((None,), tf.int32, name="sample_rate"),
    }
