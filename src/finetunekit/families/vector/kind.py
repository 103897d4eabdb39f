"""The vector backbone kind: a user's Keras model on feature vectors (states, tabular rows).

A policy network pretrained on an environment's state vectors, or any model
mapping `(batch, features)` to `(batch, width)`, fine-tunes like an image
backbone: each layer with weights is a block for `unfreeze=N` (the last
layers train first), and a head goes on top of its output.
"""

import keras

from finetunekit.core.kind import BackboneKind, check_layer_decay, check_needs
from finetunekit.core.weights import clone_with_policy, load_weights_file


def is_vector_model(model):
    """True for a Keras model with one input of shape `(batch, features)`."""
    if not isinstance(model, keras.Model):
        return False
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):  # a subclassed model not built yet
        return False
    return isinstance(shape, tuple) and len(shape) == 2 and shape[-1] is not None


class VectorModelBackbone(BackboneKind):
    """A user's Keras model on vectors: `(batch, features)` in, `(batch, width)` features out.

    Args:
        backbone: a `keras.Model` with one rank-2 input.
        weights: None (the model's own weights) or a `.weights.h5` file.
        policy: str. Dtype policy name.
        layer_decay: float in (0, 1] or None.
    """

    name = "vector_model"
    modality = "vector"
    description = "a keras.Model on vectors (input shape (batch, features))"
    priority = 10  # a keras.Model on vectors, asked before the image model kind
    default_learning_rates = (1e-3, 1e-3)

    @classmethod
    def matches(cls, backbone):
        return is_vector_model(backbone)

    def __init__(self, backbone, weights=None, input_shape=None, preprocessing="auto",
                 policy="float32", architecture=None, layer_decay=None, **options):
        if options:
            raise ValueError(
                f"{', '.join(sorted(options))} apply to text (keras-hub) backbones only; "
                f"the backbone {backbone.name!r} takes vectors."
            )
        self.layer_decay = check_layer_decay(layer_decay)
        if weights not in (None, "imagenet", "pretrained"):
            load_weights_file(backbone, weights)
        self.model = clone_with_policy(backbone, policy) if policy != "float32" else backbone
        self.num_features = int(self.model.input_shape[-1])
        if len(self.model.output_shape) != 2:
            raise ValueError(
                f"The backbone {self.model.name!r} returns shape {self.model.output_shape}; a "
                "vector backbone returns (batch, width)."
            )

    def groups(self):
        """Each layer with weights is a block, input side first."""
        return [(layer.name, [layer]) for layer in self.model.layers if layer.weights]

    def data_pipeline(self, head, augmentation=()):
        from finetunekit.families.vector.pipeline import VectorPipeline

        return VectorPipeline(head, self.num_features)

    def serving_signature(self):
        """Float32 state vectors, `(batch, features)`."""
        import tensorflow as tf

        return {"states": tf.TensorSpec((None, self.num_features), tf.float32, name="states")}

    def build(self, needs=("features",), augmentation=()):
        """`"states"` input `(batch, features)` -> the model -> `{"features": ...}`."""
        check_needs(self, needs)
        if augmentation:
            raise ValueError("augment= applies to images; remove it for a vector backbone.")
        inputs = keras.Input(shape=(self.num_features,), name="states")
        return inputs, {"features": self.model(inputs)}
