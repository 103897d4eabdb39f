"""Movie recommendations: pretrain user/item embeddings, then fine-tune them on newer ratings.

The ratings are MovieLens-100k from the `recbole` wheel when it is installed
(`pip install --no-deps recbole`), or `--data` (a CSV/TSV of user, item,
rating, timestamp). They are split in time: the model is pretrained on the
oldest 60 %, its tables are loaded by id into a model that also knows the
users and movies of the next 20 % (new ids get fresh rows), fine-tuned on
that period and tested on the last 20 %.

`--smoke` (for CI) trains one epoch on the first 3,000 ratings, generated ones
when MovieLens is not installed: it checks that the code runs.

    python examples/movielens.py --smoke
    python examples/movielens.py --epochs 10

Extras (checked at start, before any training): pandas, for the ratings tables, and
keras-rs, for the retrieval head

    pip install "finetunekit[pandas]"
    pip install "finetunekit[recommend]"
"""

import argparse
import importlib.util
import os
import sys
import tempfile

import numpy as np
from _extras import check_extras  # noqa: E402  (examples/_extras.py, beside this script)

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {"pandas": '"finetunekit[pandas]"', "keras_rs": '"finetunekit[recommend]"'}


def movielens():
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "dataset_example", "ml-100k", "ml-100k.inter")
    return path if os.path.isfile(path) else None


def generated_ratings(n=600, seed=0):
    """Users who like movies of one of four genres, rating them over time."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, n)
    movies = (users % 4) + 4 * rng.integers(0, 10, n)
    return pd.DataFrame({"user_id": users, "item_id": movies, "rating": 4 + rng.integers(0, 2, n),
                         "timestamp": np.sort(rng.integers(0, 10**6, n))})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CSV/TSV of user, item, rating, timestamp")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="one epoch, generated data if needed")
    args = parser.parse_args(argv)
    check_extras(EXTRAS, __file__)
    import pandas as pd

    import finetunekit as fk

    data = args.data or movielens()
    if data is None and not args.smoke:
        sys.exit("No ratings: pip install --no-deps recbole, or pass --data ratings.csv")
    ratings = generated_ratings() if data is None else fk.data.read_interactions(data)
    if args.smoke:
        ratings = ratings.sort_values("timestamp").head(3000)
    epochs = 1 if args.smoke else args.epochs
    old, new, test = fk.data.temporal_split(ratings, fractions=(0.6, 0.2))
    both = pd.concat([old, new], ignore_index=True)
    with tempfile.TemporaryDirectory() as folder:
        pretrained = fk.FineTuner(
            backbone=fk.backbones.Embeddings(users=old.user.unique(), items=old.item.unique(),
                                             dim=args.dim),
            head=fk.RetrievalHead(k=10), unfreeze="all",
        )
        pretrained.fit(old, epochs=epochs, batch_size=256, verbose=0)
        tables = os.path.join(folder, "pretrained.weights.h5")
        pretrained.save_weights(tables)
        backbone = fk.backbones.Embeddings(users=both.user.unique(), items=both.item.unique(),
                                           dim=args.dim, pretrained=tables)
        print(f"fresh rows for new ids: {backbone.fresh}")
        rec = fk.FineTuner(backbone=backbone, head=fk.RetrievalHead(k=10), unfreeze="all")
        rec.fit(new, epochs=epochs, batch_size=256, verbose=0)
        scorable = test[test.user.isin(set(both.user)) & test.item.isin(set(both.item))]
        print(rec.evaluate_ranking(scorable, seen=both))
        user = str(scorable.user.iloc[0])
        print(f"top 5 for user {user}: {rec.recommend([user], k=5, seen=both)[0]}")
        path = os.path.join(folder, "recommender.keras")
        rec.save(path)
        print(f"reloaded: {fk.load(path).recommend([user], k=5, seen=both)[0]}")


if __name__ == "__main__":
    main()
