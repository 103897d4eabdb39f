"""keras-hub image backbones with pyramid outputs: objects, segmenter backbones, preset folders."""

import numpy as np
import pytest

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


def tiny_hgnet(out_features=("stage3", "stage4")):
    """A keras-hub HGNetV2Backbone (D-FINE's encoder), 4 stages of 16 channels, any input size."""
    import keras_hub

    stage = [16, 8, 16, 1, 1, 3]
    return keras_hub.models.HGNetV2Backbone(
        stem_channels=[3, 8, 8], stackwise_stage_filters=[[8, 8, 16, 1, 1, 3]] + [stage] * 3,
        apply_downsample=[False, True, True, True], depths=[1, 1, 1, 1],
        use_lightweight_conv_block=[False, False, True, True], hidden_sizes=[16] * 4,
        embedding_size=8, use_learnable_affine_block=False, hidden_act="relu",
        image_shape=(None, None, 3), out_features=list(out_features),
    )


def tiny_dfine():
    """A D-FINE detector backbone on `tiny_hgnet` (hidden size 8, one encoder and decoder layer)."""
    import keras_hub

    return keras_hub.models.DFineBackbone(
        backbone=tiny_hgnet(), decoder_in_channels=[8, 8], encoder_hidden_dim=8, num_labels=2,
        num_denoising=0, learn_initial_query=False, num_queries=4, anchor_image_size=(32, 32),
        feat_strides=[16, 32], num_feature_levels=2, hidden_dim=8, encoder_in_channels=[16, 16],
        encode_proj_layers=[1], num_attention_heads=1, encoder_ffn_dim=8, num_encoder_layers=1,
        hidden_expansion=0.34, depth_multiplier=0.5, eval_idx=-1, num_decoder_layers=1,
        decoder_attention_heads=1, decoder_ffn_dim=8, decoder_n_points=[1, 1], lqe_hidden_dim=4,
        num_lqe_layers=1, out_features=["stage3", "stage4"], image_shape=(None, None, 3), seed=0,
    )


def small_detection_head():
    return fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, max_level=5)


def test_a_d_fine_detector_lends_its_hgnetv2_stages_as_a_pyramid():
    import keras_hub

    detector = keras_hub.models.DFineObjectDetector(backbone=tiny_dfine(), num_classes=2)
    ft = fk.FineTuner(backbone=detector, head=small_detection_head(), input_shape=(32, 32, 3))
    assert ft.backbone_kind.name == "keras_hub_image"
    assert isinstance(ft.backbone, keras_hub.models.HGNetV2Backbone)
    # every stage, not only the two D-FINE read, at its stride (stem and stage1 share stride 4)
    sizes = {level: t.shape[1] for level, t in ft.backbone_outputs["pyramid"].items()}
    assert sizes == {"P2": 8, "P3": 4, "P4": 2, "P5": 1}
    assert ft.backbone_outputs["features"].shape[1:] == (1, 1, 16)
    for mine, theirs in zip(ft.backbone.get_weights(), detector.backbone.backbone.get_weights(),
                            strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert ft.predict(np.zeros((1, 40, 24, 3), "uint8"), verbose=0).shape == (1, 21 * 9, 6)
    classifier = fk.FineTuner(backbone=tiny_hgnet(), head=fk.ClassificationHead(2),
                              input_shape=(32, 32, 3))
    assert classifier.predict(np.zeros((2, 32, 32, 3), "uint8"), verbose=0).shape == (2, 2)


def test_detector_preset_names_and_folders_are_recognised(tmp_path):
    import keras_hub

    from finetunekit.families.image.hub_image import KerasHubImageBackbone, is_image_preset

    for name in ("dfine_nano_coco", "retinanet_resnet50_fpn_coco", "hgnetv2_b4_ssld_stage2_ft_in1k"):
        assert is_image_preset(name) and KerasHubImageBackbone.matches(name)
    dfine = tiny_dfine()
    keras_hub.models.DFineObjectDetector(backbone=dfine, num_classes=2).save_to_preset(
        str(tmp_path / "task")
    )
    retinanet = keras_hub.models.RetinaNetBackbone(
        image_encoder=tiny_hub_resnet(), min_level=3, max_level=4, use_p5=False
    )
    retinanet.save_to_preset(str(tmp_path / "retinanet"))
    for folder, encoder in (("task", dfine.backbone), ("retinanet", retinanet.image_encoder)):
        assert is_image_preset(str(tmp_path / folder))
        ft = fk.FineTuner(backbone=str(tmp_path / folder), head=small_detection_head()
                          if folder == "task" else fk.SegmentationHead(2, filters=4),
                          input_shape=(32, 32, 3))
        for mine, saved in zip(ft.backbone.get_weights(), encoder.get_weights(), strict=True):
            np.testing.assert_array_equal(mine, saved)


@pytest.mark.slow
def test_an_hgnetv2_detector_fits_saves_reloads_and_runs_in_bfloat16(tmp_path):
    dfine = tiny_dfine()
    dfine.save_to_preset(str(tmp_path / "backbone"))
    ft = fk.FineTuner(backbone=str(tmp_path / "backbone"), head=small_detection_head(),
                      input_shape=(32, 32, 3), unfreeze=1, layer_decay=0.8)
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype("uint8")
    y = {"boxes": [[[2, 2, 20, 20]]] * 4, "labels": [[0]] * 4}
    assert np.isfinite(ft.fit(x, y, epochs=1, batch_size=2, verbose=0).history["loss"]).all()
    ft.save(str(tmp_path / "det.keras"))
    loaded = fk.load(str(tmp_path / "det.keras"))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ft.predict(x, verbose=0), atol=1e-5)
    mixed = fk.FineTuner(backbone=dfine, head=small_detection_head(), input_shape=(32, 32, 3),
                         mixed_precision="bfloat16")
    assert mixed.backbone.compute_dtype == "bfloat16"
    assert np.isfinite(mixed.predict(x, verbose=0)).all()


def test_a_frozen_backbone_stays_frozen_when_rebuilt_from_its_config():
    """A keras-hub backbone rebuilt from a saved config kept its layers trainable under
    `unfreeze=0`: fit after `fk.load` trained the whole backbone."""
    ft = fk.FineTuner(tiny_hub_resnet(), fk.ClassificationHead(num_classes=2), input_shape=(32, 32, 3))
    rebuilt = fk.FineTuner.from_config(ft.get_config())
    fresh = sorted(v.path for v in ft.trainable_variables)
    assert fresh == sorted(v.path for v in rebuilt.trainable_variables)
    assert all(path.startswith("classification_head") for path in fresh), fresh
