"""The kind and head bases shared by models that generate text token by token.

Sequence-to-sequence models (BART, T5) and decoder-only models (Llama, GPT-2)
give the head the same two outputs: the next-token logits of keras-hub's own
task model on the backbone (`"lm_logits"`, so tied output embeddings are kept)
and the mask of the positions being predicted (`"padding_mask"`).
"""

import keras
from keras import ops

from finetunekit.core.head import Head
from finetunekit.core.kind import TokenKind, check_needs
from finetunekit.generation.samplers import CompiledGenerator
from finetunekit.training.metrics import TokenAccuracy


class LanguageModelKind(CompiledGenerator, TokenKind):
    """A token backbone whose `task` (a keras-hub task on `model`) gives next-token logits.

    Subclasses set `task` (the keras-hub task model called in the graph),
    `input_names` and `mask_input`, and the wording of their refusals.

    Attributes:
        input_names: tuple of str. The token inputs of `task`, in order.
        mask_input: str. The input whose mask comes with the logits.
        head_name: str. The head that reads the logits (for errors).
        noun: str. What the backbone is called in errors.
    """

    provides = ("lm_logits", "padding_mask")
    input_names = ()
    mask_input = "padding_mask"
    head_name = "a generative head"
    noun = "a language model"

    def cache_blocker(self):
        return "feature caching supports image backbones only"

    def check_augmentation(self, augmentation):
        """Raises: `augment` has no meaning for token inputs of a language model."""
        if augmentation:
            raise ValueError(f"`augment` is not supported for {self.noun} backbones.")

    def input_dtype(self, name):
        """The dtype of the graph input `name` (masks are bool, ids int32)."""
        return "bool" if name.endswith("mask") else "int32"

    def build(self, needs=("lm_logits",), augmentation=()):
        """Token inputs -> `{"lm_logits": next-token logits, "padding_mask": target mask}`.

        Args:
            needs: iterable of str. The outputs the head asks for.
            augmentation: must be empty.

        Returns:
            `(inputs, outputs)`: a dict of Keras inputs and the two outputs.
        """
        other = sorted(set(needs) - set(self.provides))
        if other:
            raise ValueError(
                f"{self.noun[0].upper()}{self.noun[1:]} gives next-token logits to "
                f"{self.head_name}; this head needs {other}. For classification or tagging "
                'use a text encoder (e.g. backbone="bert_base_en_uncased").'
            )
        check_needs(self, needs)
        self.check_augmentation(augmentation)
        return self.graph()

    def graph(self):
        """`(inputs, outputs)` of the task on Keras inputs named `input_names`.

        Subclasses whose graph differs (e.g. packed rows) override this; the
        checks of `build` stay shared.
        """
        inputs = {
            name: keras.Input(shape=(None,), dtype=self.input_dtype(name), name=name)
            for name in self.input_names
        }
        logits = self.task(inputs)
        return inputs, {"lm_logits": logits, "padding_mask": inputs[self.mask_input]}


class NextTokenHead(Head):
    """Base class of heads that train a model's own next-token logits (teacher forcing).

    The head adds no weights: it reads the logits the backbone gives under
    `logits_key` (in float32, whatever the dtype policy) and trains them with
    sparse categorical cross-entropy against the next token of each position,
    weighted by the pipeline's target mask.

    Attributes:
        logits_key: str. The backbone output holding the logits.
        loss_reduction: str. The Keras loss reduction of `default_loss`.
    """

    needs = ("lm_logits",)
    logits_key = "lm_logits"
    loss_reduction = "sum_over_batch_size"
    weighted_metrics = True  # the pipeline's per-token weights mask prompts and padding

    def call(self, outputs, training=None):
        return ops.cast(outputs[self.logits_key], "float32")

    def compute_output_shape(self, input_shape):
        return input_shape[self.logits_key]

    def default_loss(self, label_smoothing=0.0):
        """Sparse categorical cross-entropy on the logits; `label_smoothing` is refused."""
        if label_smoothing:
            raise ValueError(f"`label_smoothing` is not supported by {type(self).__name__}.")
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=self.loss_reduction
        )

    def default_metrics(self):
        """`token_accuracy` over the target tokens only (`TokenAccuracy` reads the weights)."""
        return [TokenAccuracy()]
