"""The head protocol: everything task-specific, behind one small interface.

A head is a Keras layer called on the backbone's outputs dict (see
`finetunekit.core.kind`) and owns its task:

- `needs`: the backbone outputs it reads (`"features"`, `"padding_mask"`,
  `"pyramid"`); the backbone builds only what is asked for.
- `target_layout`: `"example"` (one target per example), `"token"` (one per
  word, aligned to sub-word tokens by the text pipeline), `"spatial"` (masks
  or boxes that must be resized and augmented with their images),
  `"transcript"` (a text per example, tokenised by the audio pipeline for
  teacher forcing) or `"sequence"` (a target text, packed with its source by
  a seq2seq pipeline) or `"conversation"` (chat records, rendered with a
  chat template and tokenised by a causal-LM pipeline, whose per-token sample
  weights are the loss mask).
- `encode_targets(y, class_names)`: checks and encodes user targets.
- `default_loss(label_smoothing)`, `default_metrics()`: what `compile("auto")` uses.
- `decode(outputs, class_names, context)`: user-facing predictions.
- `report(outputs, targets, class_names)`: its section of `fk.report`;
  `make_report(tuner, x, y, ...)` instead for heads that score generated
  output (speech to text, seq2seq).
- `cache_input(outputs)` / `call_cached(cached)`: what feature caching stores
  and how the head runs on it (`None`: the head cannot train on a cache).
- `class_weight(labels, mode, class_names)`: `fit(class_weight=...)`.
- `task_methods`: names of extra `FineTuner` methods the head provides
  (`predict_entities`, ...): `ft.NAME(...)` calls `head.NAME(ft, ...)`.
- `adapt_backbone(kind)`: the backbone kind the head runs on, given the
  resolved one (the same by default; `Seq2SeqHead(decoder="warm_start")`
  turns a BERT encoder into an encoder-decoder).
- `weighted_metrics`: True when `compile("auto")` passes the head's metrics
  as Keras `weighted_metrics` (they must honour per-token sample weights).
- `augment_in_model`: True when augmentation layers run inside the model on
  inputs alone; spatial heads (`finetunekit.core.spatial`) set it False and
  the data pipeline augments inputs and targets together.
- `serving_outputs(tuner, outputs, input_size)`: what an exported model
  serves (the model outputs by default; detection serves boxes after NMS,
  segmentation class-id masks at the input's size, retrieval the top-k item
  ids); `serving_function(tuner)` / `serving_resources(tuner)` instead for
  heads that generate in the graph (speech to text, sequence to sequence).
"""

import keras

TARGET_LAYOUTS = ("example", "token", "spatial", "transcript", "sequence", "conversation")


def as_outputs(outputs):
    """The backbone outputs dict of a head call (a bare tensor means `{"features": tensor}`)."""
    return outputs if isinstance(outputs, dict) else {"features": outputs}


class Head(keras.layers.Layer):
    """Base class of finetunekit heads (see the module docstring for the protocol).

    Subclasses implement `call(outputs, training=None)` on the outputs dict,
    `encode_targets` and `default_loss`; the other methods have defaults.

    Args:
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    needs = ("features",)
    target_layout = "example"
    task_methods = ()
    #: str or None. The command line's name of what this head learns
    #: (`finetunekit fit --task NAME`, and how `evaluate`/`predict` read a saved
    #: model); None for heads that read data as classification does.
    cli_task = None
    augment_in_model = True
    #: True when the head's metrics must see the sample weights (Keras `weighted_metrics`),
    #: e.g. a per-token loss mask.
    weighted_metrics = False

    def default_loss(self, label_smoothing=0.0):  # pragma: no cover - abstract
        raise NotImplementedError

    def adapt_backbone(self, kind):
        """The backbone kind this head runs on, given the resolved `kind` (unchanged by default)."""
        return kind

    def default_metrics(self):
        return []

    def encode_targets(self, y, class_names=None):  # pragma: no cover - abstract
        """Checks and encodes targets. Returns `(encoded_y, class_names)`."""
        raise NotImplementedError

    def decode(self, outputs, class_names=None, context=None):
        """User-facing predictions from model outputs (`context`: what the pipeline knows of x)."""
        return outputs

    def report(self, outputs, targets, class_names=None):
        """A `fk.Report` of predictions against encoded targets."""
        raise ValueError(f"{type(self).__name__} has no report; use FineTuner.evaluate instead.")

    def make_report(self, tuner, x, y=None, batch_size=None, **options):
        """A `fk.Report` from the head's own predictions on raw data, or None.

        Heads that generate (speech to text, seq2seq) score generated text
        here; None (the default) lets `fk.report` predict and call `report`.
        """
        return None

    def cache_input(self, outputs):
        """The symbolic tensor feature caching stores (from the backbone outputs), or None."""
        return None

    def call_cached(self, cached, training=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def class_weight(self, labels, mode, class_names=None):
        """Resolves `fit(class_weight=...)`; this head accepts none."""
        shown = f'class_weight="{mode}"' if isinstance(mode, str) else "`class_weight`"
        raise ValueError(
            f"{shown} needs a single-label ClassificationHead; this head is "
            f"{type(self).__name__}. Pass sample_weight=... instead."
        )

    def serving_outputs(self, tuner, outputs, input_size=None):
        """What `ft.export(...)` serves for a batch of raw inputs: the model outputs by default.

        Heads whose user-facing predictions need decoding (boxes after NMS,
        class-id masks) override this with graph ops, so that the exported
        model returns what `predict_labels` / the task methods return.

        Args:
            tuner: the `FineTuner` being exported (a retrieval head reads
                its item ids from it).
            outputs: the model's output tensor on the batch.
            input_size: int32 tensor `(height, width)` of the raw input
                images, or None (inputs without a size).

        Returns:
            A tensor or a dict of named tensors.

        Example:
        ```python
        served = head.serving_outputs(ft, ft(images, training=False), tf.shape(images)[1:3])
        ```
        """
        return outputs

    def serving_function(self, tuner):
        """A graph function that serves this head's predictions, or None for the generic one.

        `ft.export` serves `head.serving_outputs(model(inputs))` by default. A
        head that generates (speech to text, sequence to sequence) returns
        `fn(inputs, training=False) -> dict of tensors` instead, traceable by
        TensorFlow; `inputs` is a dict keyed by the kind's `serving_signature()`.

        Args:
            tuner: the `FineTuner` being exported.

        Returns:
            A callable, or None.
        """
        return None

    def serving_resources(self, tuner):
        """Keras objects the serving function uses beyond the model (tokenizers, generators).

        Args:
            tuner: the `FineTuner` being exported.

        Returns:
            A list of Keras layers or models that the SavedModel must track.
        """
        return []

    def check_loss(self, loss):
        """Raises when a user's `compile(loss=...)` cannot train this head's outputs."""
        return loss
