"""Image backbone kinds: the `keras.applications` table and a user's own Keras image model."""

import os

import keras

from finetunekit.core.freezing import open_norm_layers
from finetunekit.core.kind import BackboneKind, check_layer_decay, check_needs
from finetunekit.core.precision import dtype_policy_scope
from finetunekit.core.weights import (
    clone_with_policy,
    is_model_path,
    load_model_file,
    load_weights_file,
)
from finetunekit.families.image.applications import block_groups, get_application
from finetunekit.families.image.downloads import download_failure_error, is_download_failure
from finetunekit.families.image.preprocessing import ImageFormatter, ImageNormalization

#: Pyramid levels: name -> downsampling factor of the input.
PYRAMID_LEVELS = {"P2": 4, "P3": 8, "P4": 16, "P5": 32}


def pyramid_layers(model, image_size):
    """The last layer of `model` at each pyramid stride: `{"P2": layer, ...}`.

    Walks the layers in graph order and keeps, for every downsampling factor of
    `PYRAMID_LEVELS`, the last layer whose 4-D output has that factor: the
    output of a stage, where the next layer starts a strided block. Levels the
    model never reaches are left out.

    Args:
        model: a functional Keras image model.
        image_size: int. Input height the strides are measured against.

    Returns:
        A dict `{level: layer}` in level order.
    """
    found = {}
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # layers used more than once
            continue
        if len(shape) != 4 or not shape[1]:
            continue
        factor = image_size / shape[1]
        for level, stride in PYRAMID_LEVELS.items():
            if abs(factor - stride) < 1e-6:
                found[level] = layer
    return {level: found[level] for level in PYRAMID_LEVELS if level in found}


def pyramid_outputs(model, image_size):
    """`{"P2": tensor, ...}`: a keras-hub backbone's own `pyramid_outputs`, else `pyramid_layers`."""
    declared = getattr(model, "pyramid_outputs", None)
    if isinstance(declared, dict) and declared:
        return {level: declared[level] for level in PYRAMID_LEVELS if level in declared}
    return {level: layer.output for level, layer in pyramid_layers(model, image_size).items()}


class ImageBackbone(BackboneKind):
    """Shared behaviour of image kinds: in-model preprocessing, blocks and pyramid features.

    Raw images (uint8 or 0-255 floats of any size, 1, 3 or 4 channels) go
    through `ImageFormatter` (resize, channel conversion), training-only
    augmentation and `ImageNormalization` (the backbone's own
    `preprocess_input` mode) inside the model.

    Args:
        backbone: str or keras.Model. See the subclasses.
        weights: `"imagenet"`, `None` or a path to a `.weights.h5`/`.keras` file.
        input_shape: tuple or None. `(height, width, channels)` seen by the
            backbone. Defaults to the backbone's native size.
        preprocessing: str. Normalisation mode, or `"auto"`.
        policy: str. Dtype policy name.
        architecture: str or None. The table row of a model built from a name.
        layer_decay: float in (0, 1] or None. Layer-wise learning-rate decay.
    """

    modality = "image"
    provides = ("features", "pyramid", "images")

    def __init__(
        self, backbone, weights="imagenet", input_shape=None, preprocessing="auto",
        policy="float32", architecture=None, layer_decay=None, **options,
    ):
        if options:
            raise ValueError(
                f"{', '.join(sorted(options))} apply to text (keras-hub) backbones only; "
                f"the backbone {backbone!r} is an image backbone."
            )
        self.layer_decay = check_layer_decay(layer_decay)
        self.spec = None
        if architecture:
            self.spec = get_application(architecture)
        model, input_shape = self._load(backbone, weights, _check_input_shape(input_shape), policy)
        if preprocessing == "auto":
            preprocessing = self.spec.preprocessing if self.spec is not None else "none"
        self.model = model
        self.architecture = self.spec.name if self.spec is not None else None
        self.input_shape = tuple(int(s) for s in input_shape)
        self.preprocessing = preprocessing

    def groups(self):
        """Ordered `(block_name, layers)` of the backbone (the table's block pattern)."""
        return block_groups(self.model, self.spec.blocks if self.spec is not None else None)

    def apply_unfreeze(self, unfreeze):
        """As `BackboneKind.apply_unfreeze`; random weights' BatchNorm layers train in their blocks."""
        blocks = super().apply_unfreeze(unfreeze)
        if self.learns_norm_stats:
            open_norm_layers(self.groups(), blocks)
        return blocks

    def data_pipeline(self, head, augmentation=()):
        if head.target_layout == "spatial":
            from finetunekit.families.image.spatial_pipeline import SpatialPipeline

            return SpatialPipeline(head, self.input_shape, augmentation)
        from finetunekit.families.image.pipeline import ImagePipeline

        return ImagePipeline(head, self.input_shape)

    def serving_signature(self):
        import tensorflow as tf

        return {"images": tf.TensorSpec((None, None, None, 3), tf.float32, name="images")}

    def build(self, needs=("features",), augmentation=()):
        """Raw images -> formatter -> augmentation -> normalisation -> backbone outputs.

        Returns:
            `(inputs, outputs)`: the `"images"` input and a dict with
            `"features"` (the backbone's last feature map) and, when `needs`
            holds `"pyramid"`, `{"P2": ..., "P5": ...}` stage outputs; with
            `"images"`, the normalised images at the input size (what a
            decoder upsamples its masks to).
        """
        check_needs(self, needs)
        for layer in augmentation:
            if getattr(layer, "modality", None) == "text":
                raise ValueError(
                    "random_deletion, random_swap and token_mask augment text; this is an image "
                    "backbone. Use image keywords such as augment={\"rotation_range\": 15, "
                    "\"horizontal_flip\": True}."
                )
        inputs = keras.Input(shape=(None, None, None), name="images")
        x = ImageFormatter(
            self.input_shape[:2], channels=self.input_shape[-1], name="image_formatter"
        )(inputs)
        for layer in augmentation:
            x = layer(x)
        x = ImageNormalization(self.preprocessing, name="image_normalization")(x)
        self.backbone_input = x  # where boundary caching cuts in (see boundary_split)
        images = {"images": x} if "images" in needs else {}
        if "pyramid" not in needs and len(self.model.outputs) == 1:
            return inputs, {"features": self.model(x), **images}
        levels = self.pyramid_outputs() if "pyramid" in needs else {}
        extractor = keras.Model(
            self.model.inputs, {"features": self.feature_output(), **levels},
            name=f"{self.model.name}_pyramid",
        )
        outputs = extractor(x)
        pyramid = {"pyramid": {level: outputs[level] for level in levels}} if "pyramid" in needs else {}
        return inputs, {"features": outputs["features"], **pyramid, **images}

    def boundary_split(self):
        """`(front, back)` of the backbone at its freezing boundary, or why not (a str)."""
        from finetunekit.training.boundary import split_at_boundary

        if getattr(self, "backbone_input", None) is None:
            return "the model is not built"
        return split_at_boundary(self.model)

    def pyramid_outputs(self):
        """`{"P2": tensor, ...}`: the backbone's declared pyramid, else its stage outputs."""
        return pyramid_outputs(self.model, self.input_shape[0])

    def feature_output(self):
        """The backbone output heads get as `"features"` (its first output)."""
        return self.model.outputs[0]

    def _load(self, backbone, weights, input_shape, policy):  # pragma: no cover - abstract
        raise NotImplementedError


class ApplicationsBackbone(ImageBackbone):
    """A `keras.applications` model by name (`"resnet50"`, `"EfficientNetV2B0"`, ...).

    The backbone table (`fk.APPLICATIONS`) gives its constructor, native input
    size, `preprocess_input` mode and block pattern.
    """

    name = "applications"
    description = 'a keras.applications name ("resnet50", ...)'
    priority = 40

    @classmethod
    def unknown_name_hint(cls, name):
        """The table's "did you mean" error for a name it does not know."""
        try:
            get_application(name)
        except ValueError as error:
            return str(error)
        return None

    @classmethod
    def matches(cls, backbone):
        if not isinstance(backbone, str) or is_model_path(backbone):
            return False
        try:
            get_application(backbone)
        except ValueError:
            return False
        return True

    def _load(self, backbone, weights, input_shape, policy):
        self.spec = spec = get_application(backbone)
        if input_shape is None:
            input_shape = (spec.image_size, spec.image_size, 3)
        if weights not in (None, "imagenet") and not is_model_path(weights):
            raise ValueError(
                '`weights` must be "imagenet", None or a path to a ".weights.h5" or '
                f'".keras" file. Received: weights={weights!r}'
            )
        if input_shape[-1] != 3:
            raise ValueError(
                f"{spec.name} takes 3-channel images; input_shape={input_shape}. Grayscale and "
                "RGBA images are converted to RGB inside the model, so keep 3 channels here."
            )
        if min(input_shape[:2]) < spec.min_size:
            raise ValueError(
                f"{spec.name} needs inputs of at least {spec.min_size}x{spec.min_size}. "
                f"Received: input_shape={input_shape}"
            )
        with dtype_policy_scope(policy):
            try:
                model = spec.constructor()(
                    include_top=False,
                    weights="imagenet" if weights == "imagenet" else None,
                    input_shape=input_shape,
                )
            except Exception as error:  # Keras raises a bare Exception for a failed download
                if weights == "imagenet" and is_download_failure(error):
                    raise download_failure_error(error, spec.name) from error
                raise
        if weights not in (None, "imagenet"):
            load_weights_file(model, weights)
        self.learns_norm_stats = weights is None
        return model, input_shape


class KerasModelBackbone(ImageBackbone):
    """A user's Keras image model (or a `.keras` file holding one).

    The model maps `(batch, height, width, channels)` images to features. Pass
    `architecture=` (a table name) when it was built from `keras.applications`,
    so that `unfreeze=N` knows its blocks.
    """

    name = "keras_model"
    description = 'a keras.Model or the path of a ".keras" file'
    priority = 90  # any keras.Model: asked after every kind of a more specific model

    @classmethod
    def matches(cls, backbone):
        return isinstance(backbone, keras.Model) or (
            isinstance(backbone, (str, os.PathLike)) and is_model_path(backbone)
        )

    def _load(self, backbone, weights, input_shape, policy):
        if isinstance(backbone, (str, os.PathLike)):
            backbone = load_model_file(backbone)
        model = backbone
        if weights == "imagenet" and self.spec is None:
            weights = None  # a user model keeps its own weights
        if weights is not None and weights != "imagenet":
            load_weights_file(model, weights)
        if policy != "float32":
            model = clone_with_policy(model, policy)
        model_shape = getattr(model, "input_shape", None)
        if isinstance(model_shape, list):
            raise ValueError(
                f"The backbone {model.name!r} has {len(model_shape)} inputs; an image "
                "backbone must take one image tensor."
            )
        if model_shape is not None:
            if len(model_shape) != 4:
                raise ValueError(
                    f"The backbone {model.name!r} takes inputs of shape {model_shape}; an "
                    "image backbone takes (batch, height, width, channels)."
                )
            if input_shape is None:
                input_shape = tuple(model_shape[1:])
        if input_shape is None or None in input_shape[:2]:
            raise ValueError(
                f"Cannot tell the input size of the backbone {model.name!r}. Pass "
                "input_shape=(height, width, channels)."
            )
        return model, input_shape


def _check_input_shape(input_shape):
    if input_shape is None:
        return None
    input_shape = tuple(input_shape)
    if len(input_shape) == 2:
        input_shape = input_shape + (3,)
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels). Received: {input_shape}")
    return input_shape
