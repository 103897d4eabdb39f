"""What `ft.export(format="saved_model" / "tflite")` serves for an audio backbone.

A classifier on a Whisper encoder is served on the same raw inputs as the
Keras model: `audio` (float32 `(batch, samples, channels)`, padded with
anything after each clip's end), `audio_length` (int32 `(batch,)`, the real
samples of each clip: padding is masked out of the features and the pooling)
and `sample_rate` (int32 `(batch,)`, one rate per batch; resampled to 16 kHz
inside). Speech to text generates token by token in Python (`predict_text`);
that loop is not a graph, so its export is refused with the way out.
"""


def serving_signature(kind):
    """`{name: tf.TensorSpec}` of the raw serving inputs of an audio backbone kind.

    Args:
        kind: an `AudioBackbone` after `build`.

    Returns:
        An ordered dict: `audio`, `audio_length`, `sample_rate`.

    Raises:
        ValueError: the model has a speech decoder (speech to text).

    Example:
    ```python
    serving_signature(ft.backbone_kind)["audio"].shape  # (None, None, None)
    ```
    """
    import tensorflow as tf

    if kind.uses_decoder:
        raise ValueError(
            'ft.export(format="saved_model"/"tflite") serves classifiers of raw audio; a '
            "SpeechToTextHead generates text token by token in Python (predict_text), which "
            "is not exported as a graph. Save the model with ft.save(\"asr.keras\") and "
            "transcribe with fk.load(...).predict_text(...), or export the teacher-forced "
            'decoder logits with ft.export(folder, format="tf_saved_model").'
        )
    return {
        "audio": tf.TensorSpec((None, None, None), tf.float32, name="audio"),
        "audio_length": tf.TensorSpec((None,), tf.int32, name="audio_length"),
        "sample_rate": tf.TensorSpec((None,), tf.int32, name="sample_rate"),
    }
