"""Training-only image augmentation from ImageDataGenerator-style keywords.

`build_augmentation` maps the keywords users know from
`keras.preprocessing.image.ImageDataGenerator` onto Keras preprocessing layers,
which run inside the model (or a `tf.data` pipeline) and are no-ops at
inference time.
"""

import keras
import numpy as np
from keras import ops

from finetunekit.core.augmentation import augmentation_keywords, build_augmentation  # noqa: F401

#: Keyword -> short description, listed in the error for an unknown keyword.
AUGMENT_KEYWORDS = {
    "rotation_range": "degrees, e.g. 20",
    "width_shift_range": "fraction of the width, e.g. 0.1",
    "height_shift_range": "fraction of the height, e.g. 0.1",
    "shear_range": "shear angle in degrees, e.g. 10",
    "zoom_range": "float z in [0, 1) for scales [1-z, 1+z], or [low, high] scales",
    "horizontal_flip": "bool",
    "vertical_flip": "bool",
    "brightness_range": "[low, high] multipliers, e.g. [0.8, 1.2]",
    "contrast_range": "float, e.g. 0.2",
    "channel_shift_range": "intensity shift in 0-255 units, e.g. 20",
    "fill_mode": '"constant", "nearest", "reflect" or "wrap"',
    "cval": "fill value for fill_mode='constant'",
    "seed": "int",
}

DEFAULT_AUGMENT = {
    "horizontal_flip": True,
    "rotation_range": 10,
    "zoom_range": 0.1,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "brightness_range": (0.8, 1.2),
}


@keras.saving.register_keras_serializable(package="finetunekit")
class RandomChannelShift(keras.layers.Layer):
    """Adds one random offset per channel, as `ImageDataGenerator`'s `channel_shift_range`.

    Active only when called with `training=True`. Values are clipped to
    `value_range`.

    Args:
        intensity: float. Offsets are drawn uniformly from
            `[-intensity, intensity]` (same units as the images).
        value_range: tuple of 2 floats. Range of the images. Defaults to
            `(0, 255)`.
        seed: int or None. Random seed.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        A tensor of the input's shape.

    Example:
    ```python
    layer = RandomChannelShift(intensity=20.0)
    shifted = layer(images, training=True)
    ```
    """

    #: Changes pixel values only: masks and boxes stay where they are.
    pixel_only = True

    def __init__(self, intensity, value_range=(0.0, 255.0), seed=None, **kwargs):
        super().__init__(**kwargs)
        if intensity < 0:
            raise ValueError(f"`intensity` must be >= 0. Received: intensity={intensity}")
        self.intensity = float(intensity)
        self.value_range = tuple(float(v) for v in value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or self.intensity == 0:
            return images
        batch = ops.shape(images)[0]
        channels = images.shape[-1]
        shift = keras.random.uniform(
            (batch, 1, 1, channels),
            minval=-self.intensity,
            maxval=self.intensity,
            seed=self.seed_generator,
            dtype=self.compute_dtype,
        )
        low, high = self.value_range
        return ops.clip(ops.cast(images, self.compute_dtype) + shift, low, high)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"intensity": self.intensity, "value_range": self.value_range, "seed": self.seed}
        )
        return config


#: Keyword -> (low, high, high excluded, what a valid value is): the numeric keywords.
NUMBER_RULES = {
    "rotation_range": (0, 180, False, "a maximum rotation in degrees, a number in [0, 180] "
                       "(e.g. 20: rotations of up to 20 degrees either way)"),
    "width_shift_range": (0, 1, True, "a fraction of the image width, a number in [0, 1) "
                          "(e.g. 0.1). For a shift in pixels, divide it by the width"),
    "height_shift_range": (0, 1, True, "a fraction of the image height, a number in [0, 1) "
                           "(e.g. 0.1). For a shift in pixels, divide it by the height"),
    "shear_range": (0, 45, False, "a maximum shear angle in degrees, a number in [0, 45] "
                    "(e.g. 10)"),
    "contrast_range": (0, 1, False, "a number in [0, 1] (e.g. 0.2: contrast scaled by "
                       "0.8 to 1.2)"),
    "channel_shift_range": (0, 255, False, "a maximum intensity shift in 0-255 pixel units, "
                            "a number in [0, 255] (e.g. 20)"),
    "cval": (-np.inf, np.inf, False, "the fill value of fill_mode=\"constant\", a number"),
}
#: Keyword -> (number z gives [1-z, 1+z] when z is in [0, max), pair bounds, what a valid value is).
RANGE_RULES = {
    "zoom_range": (1, (0, np.inf), "a number z in [0, 1) (scales from 1-z to 1+z; e.g. 0.2) "
                   "or a pair [low, high] of positive scales with low <= high (e.g. [0.8, 1.2])"),
    "brightness_range": (1, (0, 2), "a pair [low, high] of multipliers with 0 <= low <= high "
                         "<= 2 (e.g. [0.8, 1.2]), or a number b in [0, 1) for [1-b, 1+b]"),
}
FILL_MODES = ("constant", "nearest", "reflect", "wrap")


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _in_range(value, low, high, high_excluded=False):
    if not _is_number(value) or np.isnan(value) or value < low:
        return False
    return value < high if high_excluded else value <= high


def _scale_range(key, value):
    """`zoom_range` / `brightness_range` as `(low, high)` scales, checked; None when unset."""
    number_max, (low_bound, high_bound), meaning = RANGE_RULES[key]
    if value is None or (_is_number(value) and value == 0):
        return None
    if _in_range(value, 0, number_max, high_excluded=True):
        return 1.0 - float(value), 1.0 + float(value)
    pair = value if isinstance(value, (list, tuple)) and len(value) == 2 else None
    if pair is not None and all(_in_range(v, low_bound, high_bound) for v in pair):
        low, high = float(pair[0]), float(pair[1])
        if low <= high and (low > 0 or key != "zoom_range"):
            return low, high
    raise ValueError(f"`{key}` must be {meaning}. Received: {key}={value!r}")


def _check_values(augment):
    """Checks keyword values in ImageDataGenerator's own terms (degrees, fractions, scales)."""
    for key, (low, high, excluded, meaning) in NUMBER_RULES.items():
        if key in augment and augment[key] is not None:
            if not _in_range(augment[key], low, high, excluded):
                raise ValueError(f"`{key}` must be {meaning}. Received: {key}={augment[key]!r}")
    for key in RANGE_RULES:
        _scale_range(key, augment.get(key))
    if augment.get("fill_mode", "nearest") not in FILL_MODES:
        raise ValueError(
            f"`fill_mode` must be one of {', '.join(map(repr, FILL_MODES))}. "
            f"Received: fill_mode={augment['fill_mode']!r}"
        )
    seed = augment.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"`seed` must be a whole number or None. Received: seed={seed!r}")


def image_augmentation(augment):
    """Builds image augmentation layers from `"default"` or ImageDataGenerator keywords.

    Args:
        augment: `"default"` (flip, small rotation, zoom, shift and
            brightness) or a dict of keywords (see `AUGMENT_KEYWORDS`).

    Returns:
        A list of Keras layers. They expect 0-255 RGB images.

    Raises:
        ValueError: for an unknown keyword (the message lists the known ones)
            or a value out of range.

    Example:
    ```python
    layers = image_augmentation({"rotation_range": 20, "horizontal_flip": True})
    ```
    """
    return _keyword_layers(_keywords(augment))


def _keywords(augment):
    """Checks a preset name or a keyword dict; returns the keyword dict."""
    if isinstance(augment, str):
        if augment != "default":
            raise ValueError(
                f'Unknown augment preset "{augment}". Expected "default", a dict of '
                "ImageDataGenerator-style keywords or a list of Keras layers."
            )
        augment = DEFAULT_AUGMENT
    if not isinstance(augment, dict):
        raise ValueError(
            '`augment` must be None, "default", a dict of keywords or a list of Keras '
            f"layers. Received: augment={augment!r}"
        )
    others = augmentation_keywords()
    AUDIO_AUGMENT_KEYWORDS = others.get("audio", {})  # noqa: N806
    TEXT_AUGMENT_KEYWORDS = others.get("text", {})  # noqa: N806
    unknown = sorted(set(augment) - set(AUGMENT_KEYWORDS) - set(AUDIO_AUGMENT_KEYWORDS))
    audio_keys = sorted(set(augment) & set(AUDIO_AUGMENT_KEYWORDS) - {"seed"})
    if audio_keys and not unknown:
        image_keys = sorted(set(augment) - set(AUDIO_AUGMENT_KEYWORDS))
        raise ValueError(
            f"`augment` mixes image keywords ({', '.join(image_keys)}) with audio keywords "
            f"({', '.join(audio_keys)}); use only the keywords of your backbone's inputs."
        )
    if unknown:
        known = "\n".join(f"  {k}: {v}" for k, v in AUGMENT_KEYWORDS.items())
        audio = "\n".join(f"  {k}: {v}" for k, v in AUDIO_AUGMENT_KEYWORDS.items())
        known = f"{known}\nAudio keywords (audio backbones; not mixed with image ones):\n{audio}"
        raise ValueError(
            f"Unknown augmentation keyword(s): {', '.join(unknown)}. Known keywords:\n{known}\n"
            f"Text backbones take {', '.join(TEXT_AUGMENT_KEYWORDS)} instead."
        )
    for key in ("horizontal_flip", "vertical_flip"):
        if key in augment and not isinstance(augment[key], (bool, np.bool_)):
            raise ValueError(
                f"`{key}` must be True or False. Received: {key}={augment[key]!r}"
            )
    _check_values(augment)
    return augment


def _keyword_layers(augment):
    """Keras preprocessing layers for ImageDataGenerator-style keywords."""
    fill_mode = augment.get("fill_mode", "nearest")
    cval = float(augment.get("cval", 0.0))
    seed = augment.get("seed")
    geometric = {"fill_mode": fill_mode, "fill_value": cval, "seed": seed}
    layers = []
    flips = [k for k in ("horizontal", "vertical") if augment.get(f"{k}_flip")]
    if flips:
        layers.append(keras.layers.RandomFlip("_and_".join(flips), seed=seed))
    rotation = float(augment.get("rotation_range", 0) or 0)
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation / 360.0, **geometric))
    width = float(augment.get("width_shift_range", 0) or 0)
    height = float(augment.get("height_shift_range", 0) or 0)
    if width or height:
        layers.append(keras.layers.RandomTranslation(height, width, **geometric))
    shear = float(augment.get("shear_range", 0) or 0)
    if shear:
        # ImageDataGenerator shears by an angle; RandomShear by tan(angle).
        import math

        factor = math.tan(math.radians(shear))  # shear_range <= 45 degrees: factor <= 1
        layers.append(keras.layers.RandomShear(x_factor=factor, y_factor=0.0, **geometric))
    zoom_pair = _scale_range("zoom_range", augment.get("zoom_range"))
    if zoom_pair and zoom_pair != (1.0, 1.0):
        # ImageDataGenerator scale s > 1 shows a smaller image (zoom out), as
        # RandomZoom's positive factors do.
        factor = (zoom_pair[0] - 1.0, zoom_pair[1] - 1.0)
        layers.append(keras.layers.RandomZoom(factor, **geometric))
    brightness = _scale_range("brightness_range", augment.get("brightness_range"))
    if brightness is not None:
        # Keras' RandomBrightness adds factor * 255; multipliers around 1 map
        # onto that additive range for mid-grey pixels.
        low, high = brightness
        layers.append(keras.layers.RandomBrightness((low - 1.0, high - 1.0), seed=seed))
    contrast = float(augment.get("contrast_range", 0) or 0)
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, seed=seed))
    shift = float(augment.get("channel_shift_range", 0) or 0)
    if shift:
        layers.append(RandomChannelShift(shift, seed=seed))
    return layers
