"""Recommendation: the Embeddings backbone, RetrievalHead / RankingHead, interactions and splits."""

import numpy as np
import pandas as pd
import pytest

import finetunekit as fk

USERS = [f"u{i}" for i in range(12)]
ITEMS = [f"i{i}" for i in range(16)]


def interactions(n=240, seed=0):
    """Users prefer items of their own group (user i likes items with i % 4 == item % 4)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, len(USERS), n)
    items = (users % 4) + 4 * rng.integers(0, 4, n)
    return pd.DataFrame({
        "userId": [USERS[u] for u in users], "movie_id": [ITEMS[i] for i in items],
        "rating": (1 + (users % 5)).astype("float32"), "timestamp": np.arange(n) * 10,
    })


def retrieval(users=USERS, **options):
    backbone = fk.backbones.Embeddings(users=users, items=ITEMS, dim=8, **options)
    return fk.FineTuner(backbone=backbone, head=fk.RetrievalHead(k=4), unfreeze="all")


def test_read_interactions_and_temporal_split(tmp_path):
    frame = interactions(20)
    path = tmp_path / "ratings.csv"
    frame.sample(frac=1, random_state=0).to_csv(path, index=False)
    read = fk.data.read_interactions(path)
    assert list(read.columns) == ["user", "item", "rating", "timestamp"]
    first, second, third = fk.data.temporal_split(path, fractions=(0.5, 0.25))
    assert (len(first), len(second), len(third)) == (10, 5, 5)
    assert first.timestamp.max() < second.timestamp.min() <= second.timestamp.max() < third.timestamp.min()
    before, after = fk.data.temporal_split(frame, cutoffs=[55])
    assert before.timestamp.max() < 55 <= after.timestamp.min() and len(before) == 6
    ints = fk.data.read_interactions({"user": [1, 2], "item": [3.0, 4.0]})
    assert ints.user.tolist() == ["1", "2"] and ints.item.tolist() == ["3", "4"]


def test_retrieval_learns_recommends_and_round_trips(tmp_path):
    train, test = fk.data.temporal_split(interactions(), fractions=(0.8,))
    rec = retrieval()
    rec.fit(train, epochs=8, batch_size=32, verbose=0)
    report = rec.evaluate(test, report=True)
    assert set(report.metrics) == {"hr@4", "ndcg@4", "mrr"}
    assert report["hr@4"] > 0.5  # the 4 items of a user's group, out of 16
    top = rec.recommend(["u1", "u2"], k=3, exclude_seen=False)
    assert all(int(item[1:]) % 4 == 1 for item in top[0])
    seen = rec.head.seen["u1"]
    kept = rec.recommend(["u1"], k=10)[0]
    assert len(kept) == 10 and not {ITEMS.index(i) for i in kept} & seen
    masked = rec.evaluate_ranking(test)
    assert masked["hr@4"] >= report["hr@4"] - 1e-6
    rec.save(str(tmp_path / "rec.keras"))
    loaded = fk.load(str(tmp_path / "rec.keras"))
    assert loaded.recommend(["u1", "u2"], k=3, exclude_seen=False) == top
    assert loaded.recommend(["u1"], k=10, seen=train) == rec.recommend(["u1"], k=10)
    with pytest.raises(ValueError, match=r"1 user id\(s\) are not known to the model: 'stranger'"):
        loaded.recommend(["stranger"])
    popular = loaded.recommend(["stranger"], k=4, unknown_ids="fallback", exclude_seen=False)[0]
    bias = loaded.head.bias.numpy()
    assert popular == [ITEMS[i] for i in np.argsort(-bias)[:4]]


def test_pretrained_rows_are_copied_by_id_and_new_ids_get_fresh_rows(tmp_path):
    rec = retrieval()
    rec.fit(interactions(), epochs=1, verbose=0)
    rec.save_weights(str(tmp_path / "mf.weights.h5"))
    users = ["new_user", *reversed(USERS)]
    with pytest.warns(UserWarning, match="1 users have fresh"):
        frozen = fk.FineTuner(
            backbone=fk.backbones.Embeddings(users=users, items=ITEMS, dim=8,
                                             pretrained=str(tmp_path / "mf.weights.h5")),
            head=fk.RetrievalHead(k=4),
        )
    old = rec.backbone.user_tower.embeddings.numpy()
    new = frozen.backbone.user_tower.embeddings.numpy()
    np.testing.assert_allclose(new[users.index("u3") + 1], old[USERS.index("u3") + 1])
    assert not np.allclose(new[1], 0) and np.allclose(new[0], 0)  # fresh row; unknown row zero
    np.testing.assert_allclose(
        frozen.backbone.item_tower.embeddings.numpy(), rec.backbone.item_tower.embeddings.numpy()
    )
    assert frozen.set_unfreeze(1) == ["users"] and not frozen.backbone.item_tower.trainable_weights
    rec.save(str(tmp_path / "mf.keras"))  # a whole saved model works as pretrained= too
    from_keras = fk.backbones.Embeddings(users=users, items=ITEMS, dim=8,
                                         pretrained=str(tmp_path / "mf.keras"))
    np.testing.assert_allclose(from_keras.user_tower.embeddings.numpy()[2:], new[2:])


def test_ranking_head_predicts_ratings():
    train, test = fk.data.temporal_split(interactions(), fractions=(0.8,))
    backbone = fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=8)
    ranker = fk.FineTuner(backbone=backbone, head=fk.RankingHead(), unfreeze="all")
    ranker.compile(learning_rate=3e-2)
    ranker.fit(train, epochs=8, verbose=0)
    report = ranker.evaluate(test, report=True)
    assert report["rmse"] < 1.0  # ratings 1..5 by user
    clicks = train.assign(rating=(train.rating > 2).astype("float32"))
    clicker = fk.FineTuner(backbone=fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=4),
                           head=fk.RankingHead(task="click"), unfreeze="all")
    clicker.fit(clicks, epochs=1, verbose=0)
    assert set(clicker.evaluate(clicks, report=True).metrics) == {"auc", "accuracy", "log_loss"}


def test_item_vectors_start_the_item_rows():
    rng = np.random.default_rng(0)
    text_vectors = {item: rng.normal(size=24) for item in ITEMS[:10]}
    text_vectors["i1"] = text_vectors["i0"]  # two items described alike start alike
    towers = fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=8, item_vectors=text_vectors)
    table = towers.item_tower.embeddings.numpy()
    np.testing.assert_allclose(table[1], table[2])
    assert towers.fresh == {"users": len(USERS), "items": 6}
    assert abs(table[1:11].std() - 0.05) < 0.01
