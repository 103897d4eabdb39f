"""Image backbones: `keras.applications` names, Keras models and `.keras` files."""

import os
import warnings

import keras

from finetunekit.backbones.applications import block_groups, get_application
from finetunekit.layers.image_preprocessing import ImageFormatter, ImageNormalization
from finetunekit.precision import dtype_policy_scope


def _is_path(value):
    return isinstance(value, os.PathLike) or (
        isinstance(value, str)
        and (value.endswith((".keras", ".h5")) or os.sep in value or value.startswith("."))
    )


def load_model_file(path, what="backbone"):
    """Loads a `.keras` file with Keras' safe mode, with a clear error if missing."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"The {what} file {path!r} does not exist. Pass the path of a saved "
            '".keras" model, or a keras.applications name such as "resnet50".'
        )
    if not path.endswith(".keras"):
        raise ValueError(
            f'A {what} file must be a ".keras" model file. Received: {path!r}. '
            'For a weights-only file use weights="path/to/file.weights.h5".'
        )
    from finetunekit.saving import read_keras_file  # a damaged file says so

    return read_keras_file(path, compile=False, safe_mode=True)


def load_weights_file(model, path):
    """Loads backbone weights from a `.weights.h5` or `.keras` file, checking shapes.

    Args:
        model: keras.Model. The backbone to fill.
        path: str. A `.weights.h5` file saved from the same architecture, or a
            `.keras` file holding that backbone (alone or inside a FineTuner).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not fit the backbone (names the shapes).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Weights file not found: {path!r}. Pass weights=None for random "
            'initialisation, weights="imagenet" for the pretrained download, or the '
            'path of an existing ".weights.h5" or ".keras" file.'
        )
    from finetunekit.saving import check_weights_file, read_keras_file  # damaged files say so

    if path.endswith(".keras"):
        source = read_keras_file(path, compile=False, safe_mode=True)
        candidates = [source] + [
            layer for layer in source.layers if isinstance(layer, keras.Model)
        ]
        target_shapes = [tuple(w.shape) for w in model.weights]
        for candidate in candidates:
            if [tuple(w.shape) for w in candidate.weights] == target_shapes:
                model.set_weights(candidate.get_weights())
                return
        raise ValueError(
            f"The model in {path!r} does not fit the backbone {model.name!r}: no "
            f"sub-model has its {len(target_shapes)} weight shapes. Save weights from "
            "the same architecture and input channels."
        )
    if not path.endswith(".h5"):
        raise ValueError(
            f'Unknown weights file type: {path!r}. Expected ".weights.h5" or ".keras".'
        )
    check_weights_file(path)
    before = [w.numpy().copy() for w in model.weights[:1]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.load_weights(path)
    except (ValueError, UserWarning, KeyError) as error:
        raise ValueError(
            f"The weights in {path!r} do not fit the backbone {model.name!r} "
            f"({len(model.weights)} weights, first {tuple(model.weights[0].shape)}): "
            f"{error}. Check the file was saved from the same architecture and "
            "input_shape."
        ) from error
    del before


def _clone_with_policy(model, policy):
    """Rebuilds a functional/sequential model with another dtype policy."""
    if keras.config.dtype_policy().name == policy and all(
        layer.dtype_policy.name == policy for layer in model.layers
    ):
        return model

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        clone_model = keras.models.clone_model(model, clone_function=clone)
    except Exception:  # subclassed models cannot be cloned
        warnings.warn(
            f"Could not rebuild {model.name!r} under the {policy!r} policy; it keeps "
            "its own dtypes.",
            stacklevel=3,
        )
        return model
    clone_model.set_weights(model.get_weights())
    return clone_model


class ImageBackbone:
    """Resolves `FineTuner(backbone=...)` for images and builds its input graph.

    Args:
        backbone: str or keras.Model. A `keras.applications` name, a path to a
            `.keras` file, or a Keras model mapping images to features.
        weights: `"imagenet"`, `None` or a path to a `.weights.h5`/`.keras` file.
        input_shape: tuple or None. `(height, width, channels)` seen by the
            backbone. Defaults to the backbone's native size.
        preprocessing: str. Normalisation mode, or `"auto"` (the table's mode
            for a named backbone, `"none"` for a user model).
        policy: str. Dtype policy name.
        architecture: str or None. The table row of a model built from a name
            (kept in configs so freezing still knows its blocks after loading).
        layer_decay: float in (0, 1] or None. Block-wise learning-rate decay:
            the top block gets the base rate, each block below `layer_decay`
            times the one above (see `learning_rate_multipliers`).
    """

    kind = "image"

    def __init__(
        self, backbone, weights, input_shape, preprocessing, policy, architecture=None, **options
    ):
        layer_decay = options.pop("layer_decay", None)
        if layer_decay is not None and not 0.0 < float(layer_decay) <= 1.0:
            raise ValueError(
                f"`layer_decay` must be in (0, 1]. Received: layer_decay={layer_decay!r}"
            )
        self.layer_decay = None if layer_decay is None else float(layer_decay)
        if options:
            raise ValueError(
                f"{', '.join(sorted(options))} apply to text (keras-hub) backbones only; "
                f"the backbone {backbone!r} is an image backbone."
            )
        spec = None
        if isinstance(backbone, str) and not _is_path(backbone):
            spec = get_application(backbone)
        elif architecture:
            spec = get_application(architecture)
        if spec is not None and input_shape is None:
            input_shape = (spec.image_size, spec.image_size, 3)
        if spec is None and isinstance(backbone, (str, os.PathLike)):
            backbone = load_model_file(backbone)
        if input_shape is not None:
            input_shape = tuple(input_shape)
            if len(input_shape) == 2:
                input_shape = input_shape + (3,)
            if len(input_shape) != 3:
                raise ValueError(
                    f"`input_shape` must be (height, width, channels). Received: {input_shape}"
                )
        if isinstance(backbone, str):
            if weights not in (None, "imagenet") and not _is_path(weights):
                raise ValueError(
                    '`weights` must be "imagenet", None or a path to a ".weights.h5" or '
                    f'".keras" file. Received: weights={weights!r}'
                )
            if input_shape[-1] != 3:
                raise ValueError(
                    f"{spec.name} takes 3-channel images; input_shape={input_shape}. "
                    "Grayscale and RGBA images are converted to RGB inside the model, so "
                    "keep 3 channels here."
                )
            if min(input_shape[:2]) < spec.min_size:
                raise ValueError(
                    f"{spec.name} needs inputs of at least {spec.min_size}x{spec.min_size}. "
                    f"Received: input_shape={input_shape}"
                )
            with dtype_policy_scope(policy):
                model = spec.constructor()(
                    include_top=False,
                    weights="imagenet" if weights == "imagenet" else None,
                    input_shape=input_shape,
                )
            if weights not in (None, "imagenet"):
                load_weights_file(model, weights)
        elif isinstance(backbone, keras.Model):
            model = backbone
            if weights == "imagenet" and spec is None:
                weights = None  # a user model keeps its own weights
            if weights is not None and weights != "imagenet":
                load_weights_file(model, weights)
            if policy != "float32":
                model = _clone_with_policy(model, policy)
            model_shape = getattr(model, "input_shape", None)
            if isinstance(model_shape, list):
                raise ValueError(
                    f"The backbone {model.name!r} has {len(model_shape)} inputs; an image "
                    "backbone must take one image tensor."
                )
            if model_shape is not None:
                if len(model_shape) != 4:
                    raise ValueError(
                        f"The backbone {model.name!r} takes inputs of shape {model_shape}; "
                        "an image backbone takes (batch, height, width, channels)."
                    )
                if input_shape is None:
                    input_shape = tuple(model_shape[1:])
            if input_shape is None or None in input_shape[:2]:
                raise ValueError(
                    f"Cannot tell the input size of the backbone {model.name!r}. Pass "
                    "input_shape=(height, width, channels)."
                )
        else:
            raise ValueError(
                "`backbone` must be a keras.applications name, a keras.Model or a path to "
                f"a .keras file. Received: {backbone!r} of type {type(backbone).__name__}"
            )
        if preprocessing == "auto":
            preprocessing = spec.preprocessing if spec is not None else "none"
        self.model = model
        self.spec = spec
        self.architecture = spec.name if spec is not None else None
        self.input_shape = tuple(int(s) for s in input_shape)
        self.preprocessing = preprocessing

    @property
    def block_pattern(self):
        return self.spec.blocks if self.spec is not None else None

    def groups(self):
        """Ordered `(block_name, layers)` of the backbone."""
        return block_groups(self.model, self.block_pattern)

    def data_adapter(self, head):
        """The data adapter that turns user data into model inputs for `head`."""
        from finetunekit.data.pipeline import ImageDataAdapter

        return ImageDataAdapter(head, self.input_shape)

    def extra_config(self):
        """Constructor arguments of FineTuner specific to this backbone kind."""
        return {} if self.layer_decay is None else {"layer_decay": self.layer_decay}

    def learning_rate_multipliers(self):
        """`{variable.path: layer_decay ** depth}`, depth counted in blocks from the top, or `{}`.

        The top block (and the head, which is not listed) gets the base rate;
        each block below gets `layer_decay` times the rate of the block above,
        the stem one step below the first block.
        """
        if self.layer_decay is None:
            return {}
        groups = self.groups()
        multipliers = {}
        for index, (_, layers) in enumerate(groups):
            scale = self.layer_decay ** (len(groups) - 1 - index)
            for layer in layers:
                for variable in layer.weights:
                    multipliers[variable.path] = scale
        return multipliers

    def build_graph(self, augmentation_layers):
        """Builds the input graph: raw images -> features.

        Returns:
            `(inputs, features, padding_mask)`; `padding_mask` is None for images.
        """
        inputs = keras.Input(shape=(None, None, None), name="images")
        x = ImageFormatter(
            self.input_shape[:2], channels=self.input_shape[-1], name="image_formatter"
        )(inputs)
        for layer in augmentation_layers:
            x = layer(x)
        x = ImageNormalization(self.preprocessing, name="image_normalization")(x)
        features = self.model(x)
        return inputs, features, None

