"""Pretrained id tables: rows of a previous model's user/item embeddings, copied by id.

Each `IdEmbedding` writes its vocabulary next to its table in `.weights.h5`
files, so a new model whose vocabularies differ in order or content can take
the rows of the ids it shares with the old one.
"""

import json
import os

import numpy as np
from keras import ops


def _tables_in_file(path):
    """`{layer name: (vocabulary, table)}` of every IdEmbedding saved in a `.weights.h5` file."""
    import h5py

    found = {}

    def visit(name, node):
        if isinstance(node, h5py.Group) and "vocabulary" in node and "0" in node:
            about = json.loads(bytes(node["vocabulary"][()]).decode())
            found[about["name"]] = (about["ids"], np.asarray(node["0"][()]))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def _read_tables(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such pretrained weights file: {path!r}")
    if path.endswith(".keras"):
        import tempfile
        import zipfile

        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as folder:
            archive.extract("model.weights.h5", folder)
            return _tables_in_file(os.path.join(folder, "model.weights.h5"))
    return _tables_in_file(path)


def copy_rows(tower, ids, vectors):
    """Sets the row of each of `ids` the tower knows to its vector; returns the ids copied."""
    row_of = {str(v): i + 1 for i, v in enumerate(tower.vocabulary)}
    pairs = [(row_of[str(v)], i) for i, v in enumerate(ids) if str(v) in row_of]
    table = ops.convert_to_numpy(tower.embeddings)
    if pairs:
        rows, sources = (np.array(p) for p in zip(*pairs))
        table[rows] = np.asarray(vectors)[sources]
    table[0] = 0.0
    tower.embeddings.assign(table)
    return {str(ids[i]) for _, i in pairs}


def load_pretrained_tables(model, path):
    """Copies pretrained rows by id into an `Embeddings` model.

    Returns:
        `{"users": ids, "items": ids}`: the sets of ids whose rows were copied.

    Raises:
        ValueError: the file holds no id tables, or their size differs from `dim`.
    """
    tables = _read_tables(path)
    if not tables:
        raise ValueError(
            f"{os.fspath(path)!r} holds no user/item embedding tables; pretrained= takes the "
            ".weights.h5 of a model with an fk.backbones.Embeddings backbone."
        )
    copied = {"users": set(), "items": set()}
    for what, tower in (("users", model.user_tower), ("items", model.item_tower)):
        if tower.name not in tables:
            continue
        vocabulary, old = tables[tower.name]
        if old.shape[1] != tower.dim:
            raise ValueError(
                f"The pretrained {what} table has {old.shape[1]} dimensions but dim={tower.dim}. "
                f"Pass dim={old.shape[1]}."
            )
        copied[what] = copy_rows(tower, vocabulary, old[1:])
    return copied
