"""Turns text (lists, DataFrames, CSV/JSONL files, class folders, datasets) into token batches.

Texts are tokenised once (and cached) by the backbone's keras-hub
preprocessor inside `tf.data`, then batched with *dynamic padding*: each batch
is padded to its own longest sequence (never longer than `sequence_length`),
or, with `padding="bucket"`, examples of similar length are batched together.
Because the backbone masks padding, outputs equal those of fixed padding.
"""

import os

import numpy as np

from finetunekit.data.images import is_dataframe
from finetunekit.data.pipeline import is_dataset, split_indices
from finetunekit.data.tfds import as_tfds, load_tfds_split, shuffled
from finetunekit.text_cleaning import clean_text, sanitize_utf8, to_utf8_bytes

PADDINGS = ("dynamic", "bucket", "fixed")
TEXT_COLUMNS = ("text", "texts", "sentence", "sentences", "review", "content", "document", "tokens", "words")
LABEL_COLUMNS = ("label", "labels", "target", "targets", "y", "class", "category", "tags", "ner_tags")
TEXT_FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
IGNORE_INDEX = -100


def read_table(path):
    """Reads a CSV/TSV/JSONL/JSON/Parquet file with pandas."""
    import pandas as pd

    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith(".csv"):
        return pd.read_csv(path, encoding_errors="replace")
    if lower.endswith(".tsv"):
        return pd.read_csv(path, sep="\t", encoding_errors="replace")
    if lower.endswith((".jsonl", ".json")):
        try:
            return pd.read_json(path, lines=lower.endswith(".jsonl"), encoding_errors="replace")
        except TypeError:  # pragma: no cover - old pandas
            return pd.read_json(path, lines=lower.endswith(".jsonl"))
    if lower.endswith(".parquet"):
        return pd.read_parquet(path)
    raise ValueError(
        f"Unknown text file type: {path!r}. Expected one of {', '.join(TEXT_FILE_TYPES)}, "
        "or a folder with one sub-folder of .txt files per class."
    )


def text_columns(df, x_col=None, y_col=None):
    """Finds the text and label columns of a DataFrame.

    Returns:
        `(x_col, y_col)`; `y_col` is None when there is no label column.
    """
    columns = list(df.columns)
    if y_col is None:
        y_col = next((c for c in columns if str(c).lower() in LABEL_COLUMNS), None)
    if x_col is None:
        x_col = next((c for c in columns if str(c).lower() in TEXT_COLUMNS), None)
        if x_col is None:
            rest = [c for c in columns if c != y_col]
            if len(rest) == 1:
                x_col = rest[0]
    if x_col not in columns:
        raise ValueError(
            f"Cannot find the text column of the DataFrame (columns: {columns}). "
            f"Name it one of {TEXT_COLUMNS} or pass x_col=..."
        )
    if y_col is not None and y_col not in columns:
        raise ValueError(f"No label column {y_col!r} in the DataFrame (columns: {columns}).")
    return x_col, y_col


def read_text_folder(directory):
    """Reads a folder of class sub-folders with `keras.utils.text_dataset_from_directory`.

    Returns:
        `(texts, labels, class_names)`: bytes texts, int labels, sorted
        sub-folder names.
    """
    import keras

    ds = keras.utils.text_dataset_from_directory(
        os.fspath(directory), batch_size=None, shuffle=False, label_mode="int"
    )
    texts, labels = [], []
    for text, label in ds.as_numpy_iterator():
        texts.append(bytes(text))
        labels.append(int(label))
    return texts, np.asarray(labels, dtype="int32"), list(ds.class_names)


def text_sources(x, y=None, x_col=None, y_col=None):
    """Normalises user text input.

    Args:
        x: a string, a list/array/Series of strings (or, for token
            classification, of word lists), a DataFrame, the path of a CSV /
            TSV / JSONL / JSON / Parquet file, or a folder of class sub-folders.
        y: labels, or a label column name for tables.
        x_col, y_col: column names of a table (auto-detected otherwise).

    Returns:
        `(texts, labels, class_names)`: a list of texts (bytes or word lists),
        labels or None, and class names from a folder or None.
    """
    if isinstance(x, (str, os.PathLike)) and os.path.isdir(x):
        if y is not None:
            raise ValueError(
                "Labels come from the class sub-folders of a folder; do not pass y with a folder."
            )
        return read_text_folder(x)
    if isinstance(x, (str, os.PathLike)) and os.fspath(x).lower().endswith(TEXT_FILE_TYPES):
        if not os.path.exists(x):
            raise FileNotFoundError(f"No such text file: {os.fspath(x)!r}")
        x = read_table(x)
    if is_dataframe(x):
        if isinstance(y, str):
            y_col, y = y, None
        x_col, y_col = text_columns(x, x_col, y_col)
        labels = x[y_col].tolist() if (y is None and y_col is not None) else y
        return list(x[x_col].tolist()), labels, None
    if isinstance(x, (str, bytes)):
        return [x], y, None
    if hasattr(x, "tolist") and not isinstance(x, list):
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        raise ValueError(
            "Text input must be a string, a list of strings, a DataFrame, a CSV/JSONL file or a "
            f"folder of class sub-folders. Received: {type(x).__name__}"
        )
    return list(x), y, None


class TextDataAdapter:
    """Prepares text data for one FineTuner.

    Args:
        head: the FineTuner's head (encodes and checks targets).
        preprocessor: the keras-hub preprocessor that tokenises strings.
        input_names: list of str. Model input names to keep.
        input_dtypes: dict. Dtype of each model input.
        clean: bool. Strip HTML tags, NFKC-normalise and collapse whitespace.
    """

    def __init__(self, head, preprocessor, input_names, input_dtypes, clean=False):
        self.head = head
        self.preprocessor = preprocessor
        self.input_names = list(input_names)
        self.input_dtypes = dict(input_dtypes)
        self.clean = clean
        self.token_level = bool(getattr(head, "token_level", False))

    @property
    def sequence_length(self):
        return int(self.preprocessor.sequence_length)

    @property
    def pad_token_id(self):
        tokenizer = self.preprocessor.tokenizer
        value = getattr(tokenizer, "pad_token_id", None)
        return 0 if value is None else int(value)

    # ---------------------------------------------------------------- strings
    def _strings(self, strings):
        strings = sanitize_utf8(strings)
        if self.clean:
            strings = clean_text(strings)
        return strings

    def _encode_batch(self, strings):
        """Tokenises a batch of strings; returns the model inputs padded to sequence_length."""
        import tensorflow as tf

        out = self.preprocessor(self._strings(strings))
        if isinstance(out, tuple):
            out = out[0]
        return {
            name: tf.cast(out[name], self.input_dtypes[name]) for name in self.input_names
        }

    @staticmethod
    def _lengths(features):
        """Token count of one example (a scalar) or of each row of a batch."""
        import tensorflow as tf

        return tf.reduce_sum(tf.cast(features["padding_mask"], "int32"), axis=-1)

    def _trim(self, features):
        """Cuts one example's padding: its tokens end where the padding mask ends."""
        length = self._lengths(features)
        return {name: value[:length] for name, value in features.items()}

    def _trim_with_targets(self, features, targets):
        length = self._lengths(features)
        return self._trim(features), targets[:length]

    def _trim_batch(self, features):
        """Cuts a batch's padding to its longest example."""
        import tensorflow as tf

        longest = tf.reduce_max(self._lengths(features))
        return {name: value[:, :longest] for name, value in features.items()}

    def padding_values(self):
        import tensorflow as tf

        values = {}
        for name in self.input_names:
            value = self.pad_token_id if name == "token_ids" else 0
            values[name] = tf.constant(value, dtype=self.input_dtypes[name])
        return values

    def tokenized_dataset(self, texts):
        """Unbatched dataset of variable-length token dicts, one per text (order kept).

        `texts` is a list of texts, or an unbatched dataset of texts or of
        `(text, label, ...)` tuples. Labels stay in the same pipeline as their
        texts: zipping two passes over a shuffling dataset would pair texts
        with other examples' labels.
        """
        import tensorflow as tf

        if not is_dataset(texts):
            texts = tf.data.Dataset.from_tensor_slices(
                np.asarray([to_utf8_bytes(t) for t in texts], dtype=object)
            )

        def encode(strings, *rest):
            return (self._encode_batch(strings), *rest) if rest else self._encode_batch(strings)

        def trim(features, *rest):
            return (self._trim(features), *rest) if rest else self._trim(features)

        return (
            texts.batch(256)
            .map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .unbatch()
            .map(trim, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        )

    def batch(self, ds, batch_size, padding="dynamic", has_targets=False, target_pad=None):
        """Pads and batches an unbatched dataset of `features` or `(features, targets)`.

        Args:
            ds: dataset of token dicts (and targets).
            batch_size: int.
            padding: `"dynamic"` (each batch padded to its longest sequence),
                `"bucket"` (similar lengths batched together, order not kept;
                see `_sortish_batches`) or
                `"fixed"` (always `sequence_length`).
            has_targets: bool. Elements are `(features, targets)`.
            target_pad: padding value of per-token targets, or None for
                per-example targets.
        """
        import tensorflow as tf

        _check_padding(padding)
        length = self.sequence_length if padding == "fixed" else None
        shapes = {name: [length] for name in self.input_names}
        values = self.padding_values()
        if has_targets:
            target_shape = tf.TensorShape(ds.element_spec[1].shape)
            if target_pad is not None:
                target_shape = tf.TensorShape([length])
                target_value = tf.constant(target_pad, ds.element_spec[1].dtype)
            else:
                target_value = tf.constant(0, ds.element_spec[1].dtype)
            shapes = (shapes, target_shape)
            values = (values, target_value)
        if padding == "bucket":
            return self._sortish_batches(ds, batch_size, shapes, values)
        return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=values)

    def _sortish_batches(self, ds, batch_size, shapes, values, chunk_batches=50):
        """Batches of similar lengths, as fastai's sortish sampling.

        The (shuffled) stream is cut into chunks of `chunk_batches` batches;
        each chunk is sorted by length, split into batches, and each batch is
        cut to its own longest sequence; the batches are then shuffled. Every
        example is seen once per epoch and the number of batches is
        `ceil(n / batch_size)`, as without bucketing.
        """
        import tensorflow as tf

        def sort_and_split(*element):
            order = tf.argsort(self._lengths(element[0]), stable=True)
            element = tf.nest.map_structure(lambda value: tf.gather(value, order), element)
            return tf.data.Dataset.from_tensor_slices(element).batch(batch_size).map(trim)

        def trim(features, *rest):
            return (self._trim_batch(features), *rest) if rest else self._trim_batch(features)

        return (
            ds.padded_batch(batch_size * chunk_batches, padded_shapes=shapes, padding_values=values)
            .flat_map(sort_and_split)
            .shuffle(chunk_batches, reshuffle_each_iteration=True)
        )

    # ----------------------------------------------------------------- public
    def prepare(
        self,
        x,
        y=None,
        *,
        class_names=None,
        batch_size=32,
        shuffle=False,
        validation_split=0.0,
        seed=None,
        x_col=None,
        y_col=None,
        require_labels=True,
        padding="dynamic",
        on_bad_image=None,
    ):
        """Checks, tokenises and batches text.

        Returns:
            `(train, validation, class_names)`: `train` and `validation` are
            `(dataset, None)` pairs of batched `tf.data.Dataset`s (validation is
            None unless `validation_split` is set).
        """
        import tensorflow as tf

        del on_bad_image
        _check_padding(padding)
        source = as_tfds(x)
        if source is not None:
            if self.token_level:
                raise ValueError(
                    f"TFDS data {source!r} is not supported for token classification; pass "
                    "word lists and tags, or a CoNLL file."
                )
            ds, names = load_tfds_split(source, y, validation_split)
            ds = self._from_dataset(shuffled(ds, shuffle, seed), batch_size, padding, train=shuffle)
            return (ds, None), None, class_names or names
        if is_dataset(x):
            if validation_split:
                raise ValueError(
                    "validation_split is not supported for a tf.data.Dataset; pass "
                    "validation_data=... instead."
                )
            return (self._from_dataset(x, batch_size, padding), None), None, class_names
        if self.token_level:
            return self._prepare_tokens(
                x, y, class_names=class_names, batch_size=batch_size, shuffle=shuffle,
                validation_split=validation_split, seed=seed, x_col=x_col, y_col=y_col,
                require_labels=require_labels, padding=padding,
            )
        texts, labels, folder_classes = text_sources(x, y, x_col, y_col)
        if folder_classes is not None and class_names is None:
            class_names = folder_classes
        n = len(texts)
        if n == 0:
            raise ValueError("No texts: the data is empty.")
        if labels is not None and len(labels) != n:
            raise ValueError(f"x and y have different lengths: {n} texts but {len(labels)} labels.")
        if labels is None and require_labels:
            raise ValueError("No labels: pass y=... (or a folder with class sub-folders).")
        targets = None
        if labels is not None:
            targets, class_names = self.head.prepare_targets(labels, class_names)
        splits = [np.arange(n)]
        if validation_split:
            splits = list(split_indices(n, validation_split, targets, seed))
        # Encoded training labels, for class_weight="balanced".
        self.train_targets = None if targets is None else targets[splits[0]]
        out = []
        for i, index in enumerate(splits):
            ds = self.tokenized_dataset([texts[j] for j in index])
            if targets is not None:
                ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(targets[index])))
            ds = ds.cache()
            train = shuffle and i == 0
            if train:
                ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
            mode = padding if train else _ordered(padding)
            ds = self.batch(ds, batch_size, mode, targets is not None)
            batches = -(-len(index) // batch_size)
            ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
            out.append((ds.prefetch(tf.data.AUTOTUNE), None))
        return out[0], (out[1] if len(out) > 1 else None), class_names

    def _encode_batches(self, ds, trim=True):
        """Tokenises each batch of a batched dataset of strings (or `(strings, labels, ...)`)."""
        import tensorflow as tf

        def encode(texts, *rest):
            features = self._encode_batch(texts)
            if trim:
                features = self._trim_batch(features)
            return (features, *rest) if rest else features

        return ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
            tf.data.AUTOTUNE
        )

    def _from_dataset(self, ds, batch_size, padding, train=False):
        """Tokenises a dataset of strings or `(strings, labels)` (batched or not).

        A batched dataset keeps its own batches (as Keras does with datasets),
        each padded to its longest text unless `padding="fixed"`. An unbatched
        one is batched here, in order unless `train` is set (then
        `padding="bucket"` groups similar lengths).
        """
        import tensorflow as tf

        spec = ds.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        if isinstance(first, dict):
            return ds  # already model inputs
        if first.dtype != tf.string:
            raise ValueError(
                f"A text dataset must yield strings or (strings, labels). Received: {spec}"
            )
        if first.shape.rank and first.shape.rank > 0:
            return self._encode_batches(ds, trim=padding != "fixed")
        examples = int(ds.cardinality())  # -1 / -2: unknown / infinite
        if isinstance(spec, tuple):
            ds = ds.map(lambda *e: (e[0], e[1]))  # (text, label); sample weights are dropped
        ds = self.tokenized_dataset(ds)
        mode = padding if train else _ordered(padding)
        ds = self.batch(ds, batch_size, mode, isinstance(spec, tuple))
        if examples >= 0:
            ds = ds.apply(tf.data.experimental.assert_cardinality(-(-examples // batch_size)))
        return ds.prefetch(tf.data.AUTOTUNE)

    # ------------------------------------------------------ token-level (NER)
    def _special_id(self, *names):
        tokenizer = self.preprocessor.tokenizer
        for name in names:
            value = getattr(tokenizer, name, None)
            if value is not None:
                return int(value)
        return self.pad_token_id

    def encode_words(self, sentences):
        """Tokenises lists of words, keeping where each word starts.

        Returns:
            `(token_ids, word_starts)`: per sentence, the token ids (with the
            start and end tokens, at most `sequence_length`) and, per word, the
            index of its first sub-word (None for words cut by truncation).
        """
        import tensorflow as tf

        sentences = [[w for w in _as_words(s)] for s in sentences]
        flat = [to_utf8_bytes(w) for s in sentences for w in s]
        pieces = []
        if flat:
            strings = self._strings(tf.constant(np.asarray(flat, dtype=object)))
            pieces = self.preprocessor.tokenizer(strings)
            pieces = pieces.to_list() if hasattr(pieces, "to_list") else list(pieces)
            pieces = [list(np.asarray(p).reshape(-1)) for p in pieces]
        start = self._special_id("cls_token_id", "start_token_id", "bos_token_id")
        end = self._special_id("sep_token_id", "end_token_id", "eos_token_id")
        unknown = self._special_id("unk_token_id", "oov_token_id")
        length = self.sequence_length
        all_ids, all_starts, k = [], [], 0
        for words in sentences:
            ids, starts = [start], []
            for _ in words:
                piece = list(pieces[k]) or [unknown]
                k += 1
                if len(ids) + len(piece) > length - 1:
                    starts.append(None)
                    continue
                starts.append(len(ids))
                ids += piece
            ids.append(end)
            all_ids.append(ids)
            all_starts.append(starts)
        return all_ids, all_starts

    def _token_features(self, token_ids):
        """Dense `(n, longest)` model inputs of token id lists (trimmed again per example)."""
        longest = max(len(ids) for ids in token_ids)
        ids = np.full((len(token_ids), longest), self.pad_token_id, dtype="int64")
        mask = np.zeros_like(ids)
        for i, row in enumerate(token_ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        features = {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
        return {
            name: features[name].astype(np.dtype(self.input_dtypes[name]))
            for name in self.input_names
        }

    def _prepare_tokens(
        self, x, y, *, class_names, batch_size, shuffle, validation_split, seed, x_col, y_col,
        require_labels, padding,
    ):
        import tensorflow as tf

        if isinstance(x, (str, os.PathLike)) and os.path.isfile(x) and not os.fspath(
            x
        ).lower().endswith(TEXT_FILE_TYPES):
            from finetunekit.heads.token_classification import read_conll

            x, y = read_conll(x)
        else:
            x, y, _ = text_sources(x, y, x_col, y_col)
        sentences = [_as_words(s) for s in x]
        if not sentences:
            raise ValueError("No texts: the data is empty.")
        if y is None and require_labels:
            raise ValueError("No tags: pass y=[[tag, ...], ...] with one tag per word.")
        token_ids, starts = self.encode_words(sentences)
        labels = None
        if y is not None:
            if len(y) != len(sentences):
                raise ValueError(f"{len(sentences)} sentences but {len(y)} tag lists.")
            tags, class_names = self.head.prepare_targets(y, class_names)
            labels = []
            for i, (ids, word_starts, word_tags) in enumerate(zip(token_ids, starts, tags, strict=True)):
                if len(word_tags) != len(word_starts):
                    raise ValueError(
                        f"Sentence {i} has {len(word_starts)} words but {len(word_tags)} tags."
                    )
                row = [IGNORE_INDEX] * len(ids)
                for position, tag in zip(word_starts, word_tags, strict=True):
                    if position is not None:
                        row[position] = int(tag)
                labels.append(row)
        n = len(sentences)
        splits = [np.arange(n)]
        if validation_split:
            splits = list(split_indices(n, validation_split, None, seed))
        out = []
        for i, index in enumerate(splits):
            features = self._token_features([token_ids[j] for j in index])
            if labels is None:
                ds = tf.data.Dataset.from_tensor_slices(features).map(self._trim)
            else:
                targets = np.full(features["token_ids"].shape, IGNORE_INDEX, dtype="int32")
                for row, j in enumerate(index):
                    targets[row, : len(labels[j])] = labels[j]
                ds = tf.data.Dataset.from_tensor_slices((features, targets)).map(
                    self._trim_with_targets
                )
            train = shuffle and i == 0
            if train:
                ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
            # predict concatenates batches: give them one length
            mode = _ordered(padding) if labels is not None else "fixed"
            ds = self.batch(ds, batch_size, mode, labels is not None, target_pad=IGNORE_INDEX)
            out.append((ds.prefetch(tf.data.AUTOTUNE), None))
        return out[0], (out[1] if len(out) > 1 else None), class_names

    def decode_words(self, x, outputs, class_names):
        """Per-word tags from per-token outputs (first sub-word of each word).

        Words cut by truncation get the first tag name (`"O"` for BIO tags).
        """
        sentences = [_as_words(s) for s in text_sources(x)[0]]
        _, starts = self.encode_words(sentences)
        names = class_names or list(range(outputs.shape[-1]))
        result = []
        for row, word_starts in zip(outputs, starts, strict=True):
            ids = np.argmax(row, axis=-1)
            result.append([names[ids[p]] if p is not None else names[0] for p in word_starts])
        return result


def _as_words(sentence):
    """A sentence as a list of words: lists stay, strings split on whitespace."""
    if isinstance(sentence, bytes):
        sentence = sentence.decode("utf-8", errors="replace")
    if isinstance(sentence, str):
        return sentence.split()
    return list(sentence)


def _check_padding(padding):
    if padding not in PADDINGS:
        raise ValueError(
            f"Unknown padding {padding!r}. Expected one of {', '.join(map(repr, PADDINGS))}. "
            f"Received: padding={padding!r}"
        )


def _ordered(padding):
    """Bucketing reorders examples; keep order where it matters (validation, predict)."""
    return "dynamic" if padding == "bucket" else padding
