"""Preprocessing layers that live inside the model, so serving equals training."""

import keras
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
NORMALIZATION_MODES = ("caffe", "tf", "torch", "zero_one", "none")


@keras.saving.register_keras_serializable(package="finetunekit")
class ImageFormatter(keras.layers.Layer):
    """Turns raw images into float images of one size and channel count, values kept in 0-255.

    Accepts uint8 or float images with 1 (grayscale), 3 (RGB) or 4 (RGBA,
    alpha dropped) channels and any height and width, converts them to
    `channels` (3: RGB, grayscale repeated; 1: luminance) and resizes them to
    `image_size`. Put it first in a model so that the saved model takes the
    same raw images at serving time as the data pipeline gave it in training.

    Args:
        image_size: tuple of 2 ints. Output `(height, width)`.
        channels: int. 3 (RGB) or 1 (grayscale). Defaults to `3`.
        interpolation: str. Resize interpolation, as for
            `keras.layers.Resizing`. Defaults to `"bilinear"`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        A float tensor of shape `(batch, height, width, channels)`.

    Example:
    ```python
    layer = ImageFormatter(image_size=(32, 32))
    layer(np.zeros((2, 50, 40, 1), "uint8")).shape  # (2, 32, 32, 3)
    ```
    """

    def __init__(self, image_size, channels=3, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.image_size = tuple(int(s) for s in image_size)
        if len(self.image_size) != 2:
            raise ValueError(
                f"`image_size` must be (height, width). Received: image_size={image_size}"
            )
        if channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
        self.channels = int(channels)
        self.interpolation = interpolation

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        channels = images.shape[-1]
        if channels is None:
            # Unknown while tracing: repeating three times and keeping the first
            # three channels maps 1 -> RGB, 3 -> RGB and 4 (RGBA) -> RGB.
            images = ops.concatenate([images, images, images], axis=-1)[..., :3]
        elif channels == 1:
            images = ops.repeat(images, 3, axis=-1)
        elif channels == 4:
            images = images[..., :3]
        elif channels != 3:
            raise ValueError(
                "Images must have 1 (grayscale), 3 (RGB) or 4 (RGBA) channels. "
                f"Received: images with {channels} channels (shape={images.shape})"
            )
        if self.channels == 1:
            weights = ops.convert_to_tensor(LUMA_WEIGHTS, self.compute_dtype)
            images = ops.sum(images * weights, axis=-1, keepdims=True)
        if tuple(images.shape[-3:-1]) != self.image_size:
            images = ops.image.resize(images, self.image_size, interpolation=self.interpolation)
        return ops.reshape(images, (-1,) + self.image_size + (self.channels,))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + self.image_size + (self.channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_size": self.image_size,
                "channels": self.channels,
                "interpolation": self.interpolation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="finetunekit")
class ImageNormalization(keras.layers.Layer):
    """Normalises 0-255 RGB images the way a pretrained backbone expects.

    The modes are those of `keras.applications.*.preprocess_input`:

    - `"caffe"`: RGB to BGR, then subtract the ImageNet mean (VGG, ResNet).
    - `"tf"`: scale to [-1, 1] (Inception, Xception, MobileNet, ResNetV2).
    - `"torch"`: scale to [0, 1], then standardise with ImageNet mean and std
      (DenseNet).
    - `"zero_one"`: scale to [0, 1].
    - `"none"`: pass through (the model normalises inside itself, as
      EfficientNet, ConvNeXt and MobileNetV3 do).

    Args:
        mode: str. One of the modes above. Defaults to `"none"`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        A tensor of the input's shape.

    Example:
    ```python
    ImageNormalization("tf")(np.full((1, 2, 2, 3), 255.0))  # all ones
    ```
    """

    def __init__(self, mode="none", **kwargs):
        super().__init__(**kwargs)
        if mode not in NORMALIZATION_MODES:
            raise ValueError(
                f'Unknown preprocessing mode "{mode}". Expected one of '
                f"{', '.join(repr(m) for m in NORMALIZATION_MODES)}. Received: mode={mode!r}"
            )
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            images = ops.flip(images, axis=-1)
            return images - ops.convert_to_tensor(CAFFE_MEAN_BGR, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(IMAGENET_STD, self.compute_dtype)
            return (images / 255.0 - mean) / std
        if self.mode == "zero_one":
            return images / 255.0
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
