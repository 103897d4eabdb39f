"""keras-hub image backbones with pyramid outputs: objects, segmenter backbones, preset folders."""

import numpy as np

import finetunekit as fk
from tests.harness import tiny_hub_resnet


def tiny_segformer():
    import keras_hub

    encoder = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[1, 1], max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2], hidden_dims=[8, 16], image_shape=(32, 32, 3),
    )
    return keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=8)


def test_a_segformer_backbone_lends_its_image_encoder_and_its_pyramid():
    segformer = tiny_segformer()
    ft = fk.FineTuner(backbone=segformer, head=fk.SegmentationHead(3, filters=4))
    assert ft.backbone_kind.name == "keras_hub_image"
    assert ft.backbone is segformer.image_encoder and ft.backbone_kind.input_shape == (32, 32, 3)
    # keras-hub names the MiT stages P1, P2 (strides 4, 8): the decoder uses the finer one
    assert set(ft.backbone_outputs["pyramid"]) == {"P1", "P2"} and ft.head.levels == ["P1"]
    masks = ft.predict_masks(np.zeros((2, 40, 20, 3), "uint8"))
    assert masks.shape == (2, 40, 20)


def test_a_local_preset_folder_loads_with_its_image_converter(tmp_path):
    import keras_hub

    encoder = tiny_hub_resnet()
    encoder.save_to_preset(str(tmp_path))
    keras_hub.layers.ResNetImageConverter(scale=1 / 255.0).save_to_preset(str(tmp_path))
    ft = fk.FineTuner(backbone=str(tmp_path), head=fk.SegmentationHead(2, filters=4),
                      input_shape=(32, 32, 3))
    assert ft.backbone_kind.name == "keras_hub_image" and ft.backbone_kind.preprocessing == "zero_one"
    for mine, saved in zip(ft.backbone.get_weights(), encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, saved)
    assert fk.FineTuner(backbone=encoder, head=fk.SegmentationHead(2), input_shape=(32, 32, 3)
                        ).backbone_kind.preprocessing == "torch"  # no converter: ImageNet mean/std
