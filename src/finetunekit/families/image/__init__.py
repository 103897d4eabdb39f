"""Image family: `keras.applications` and keras-hub image backbones, your own image model.

Kinds: `ApplicationsBackbone`, `KerasHubImageBackbone`, `KerasModelBackbone`;
in-model image preprocessing, ImageDataGenerator-style augmentation, the image
pipeline and the spatial pipeline that moves masks and boxes with their images.
"""
