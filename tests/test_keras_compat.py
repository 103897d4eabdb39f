"""The private Keras / keras-hub internals finetunekit uses (finetunekit/core/_keras_compat.py) still exist and work, and none are used elsewhere."""

import ast
import pathlib
import textwrap

import keras
import keras_hub
import numpy as np
import pytest

from finetunekit.core import _keras_compat as compat

ROOT = pathlib.Path(compat.__file__).resolve().parents[1]  # src/finetunekit
COMPAT = pathlib.Path(compat.__file__).resolve()
PRIVATE_MODULE_PREFIXES = ("keras.src", "keras_hub.src", "tensorflow.python")
ACCESSORS = {"getattr", "setattr", "hasattr", "delattr"}
OBJECT_ACCESSORS = {"__getattribute__", "__setattr__", "__delattr__"}
DICT_ACCESSORS = {"get", "pop", "setdefault"}


# ------------------------------------------------------------------ the scanner
def is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_private_module(name):
    return any(name == p or name.startswith(p + ".") for p in PRIVATE_MODULE_PREFIXES)


def class_index(trees):
    """Every class in `trees`: simple name -> [(simple base names, names its body defines)]."""
    index = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
                defined = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
                defined |= {t.id for n in node.body if isinstance(n, ast.Assign) for t in n.targets
                            if isinstance(t, ast.Name)}
                index.setdefault(node.name, []).append((bases, defined))
    return index


def inherits_own(class_name, name, index, seen=None):
    """True when a finetunekit base class of `class_name` (by simple name) defines `name`."""
    seen = set() if seen is None else seen
    for bases, _ in index.get(class_name, []):
        for base in bases:
            if base in seen:
                continue
            seen.add(base)
            if any(name in defined for _, defined in index.get(base, [])):
                return True
            if inherits_own(base, name, index, seen):
                return True
    return False


class PrivateUses(ast.NodeVisitor):
    """Collects `(line, name)` of each private Keras / keras-hub / TensorFlow use in one module.

    Flagged: `obj._name` (read or written) on anything but `self`, `cls`, the
    enclosing class itself, or a `super()` whose `_name` a finetunekit base
    class defines; `getattr/setattr/hasattr/delattr(obj, "_name")` and
    `object.__setattr__(obj, "_name", ...)` on anything but `self`/`cls`;
    `"_name"` keyword arguments and `.get/.pop/.setdefault("_name")` keys;
    `"_name"` strings in tuple/list/set literals (tables of private attribute
    names read with `getattr`); imports from, and strings naming,
    `keras.src`, `keras_hub.src` or `tensorflow.python`.
    """

    def __init__(self, index):
        self.index, self.classes, self.found = index, [], []

    def flag(self, node, name):
        self.found.append((node.lineno, name))

    def visit_ClassDef(self, node):
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node):
        value = node.value
        if is_private(node.attr) and not self.own_object(value, node.attr):
            self.flag(node, node.attr)
        self.generic_visit(node)

    def own_object(self, value, name):
        if isinstance(value, ast.Name):
            return value.id in ("self", "cls") or value.id in self.classes
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            return bool(self.classes) and inherits_own(self.classes[-1], name, self.index)
        return False

    def visit_Call(self, node):
        func, args = node.func, node.args
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if (name in ACCESSORS or name in OBJECT_ACCESSORS) and len(args) >= 2:
            target, attribute = args[0], args[1]
            if (isinstance(attribute, ast.Constant) and isinstance(attribute.value, str)
                    and is_private(attribute.value)
                    and not (isinstance(target, ast.Name) and target.id in ("self", "cls"))):
                self.flag(node, attribute.value)
        if name in DICT_ACCESSORS and isinstance(func, ast.Attribute) and args:
            key = args[0]
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and is_private(key.value):
                self.flag(node, key.value)
        for keyword in node.keywords:
            if keyword.arg and is_private(keyword.arg):
                self.flag(node, keyword.arg)
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and is_private_module(arg.value):
                self.flag(node, arg.value)
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            if is_private_module(alias.name):
                self.flag(node, alias.name)

    def visit_ImportFrom(self, node):
        if node.module and node.level == 0 and is_private_module(node.module):
            self.flag(node, node.module)

    def visit_collection(self, node):
        for element in node.elts:
            if (isinstance(element, ast.Constant) and isinstance(element.value, str)
                    and element.value.isidentifier() and is_private(element.value)):
                self.flag(element, element.value)
        self.generic_visit(node)

    visit_Tuple = visit_List = visit_Set = visit_collection


def private_uses(sources):
    """`{"<path>:<name>": [lines]}` for every private use in `sources` (`{path: source text}`)."""
    trees = {path: ast.parse(text) for path, text in sources.items()}
    index = class_index(trees.values())
    uses = {}
    for path, tree in trees.items():
        visitor = PrivateUses(index)
        visitor.visit(tree)
        for line, name in visitor.found:
            uses.setdefault(f"{path}:{name}", []).append(line)
    return uses


def package_sources():
    """Every module of finetunekit (but `core/_keras_compat.py`), by path under src/finetunekit."""
    return {
        path.relative_to(ROOT).as_posix(): path.read_text()
        for path in sorted(ROOT.rglob("*.py"))
        if path.resolve() != COMPAT and "__pycache__" not in path.parts
    }


# ------------------------------------------------------------------ tests
def test_private_api_is_present():
    assert compat.check_private_api() == (keras.__version__, keras_hub.__version__)


def test_check_fails_loudly_for_each_missing_name(monkeypatch):
    monkeypatch.setattr(compat, "PRIVATE_ATTRIBUTES", {
        **compat.PRIVATE_ATTRIBUTES,
        "keras.Model": ("_maybe_symbolic_build", "_no_such_method"),
        "keras_hub.layers.TransformerDecoder (built with cross-attention)": ("_no_such_layer",),
    })
    monkeypatch.setattr(compat, "PRIVATE_MODULES", {
        **compat.PRIVATE_MODULES,
        "keras_hub.src.no_such_module": ("anything",),
        "keras_hub.src.utils.preset_utils": ("get_preset_loader", "PresetLoader.no_such_method"),
    })
    monkeypatch.setattr(compat, "PRIVATE_KEYWORDS", {"_no_such_keyword": ("fit",)})
    with pytest.raises(RuntimeError) as raised:
        compat.check_private_api()
    message = str(raised.value)
    for missing in (
        "keras.Model._no_such_method",
        "keras_hub.layers.TransformerDecoder (built with cross-attention)._no_such_layer",
        "module keras_hub.src.no_such_module",
        "keras_hub.src.utils.preset_utils.PresetLoader.no_such_method",
        "keras.Model.fit keyword _no_such_keyword",
        "_keras_compat.py",
    ):
        assert missing in message
    assert "_maybe_symbolic_build" not in message and "get_preset_loader" not in message


def test_the_check_covers_every_private_name_the_compat_module_uses():
    """Each private name `_keras_compat.py` reads is in a table `check_private_api` looks up."""
    checked = {name for names in compat.PRIVATE_ATTRIBUTES.values() for name in names}
    checked |= set(compat.PRIVATE_KEYWORDS) | set(compat.PRIVATE_MODULES)
    uses = private_uses({"compat": COMPAT.read_text()})
    unchecked = sorted(key for key in uses if key.split(":", 1)[1] not in checked)
    assert not unchecked, f"private names used in _keras_compat.py but not checked: {unchecked}"
    for node in ast.walk(ast.parse(COMPAT.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in compat.PRIVATE_MODULES:
            listed = {name.split(".")[0] for name in compat.PRIVATE_MODULES[node.module]}
            assert {alias.name for alias in node.names} <= listed, node.module


def test_no_private_keras_access_outside_the_compat_module():
    uses = private_uses(package_sources())
    assert not uses, (
        "private Keras / keras-hub / TensorFlow access outside finetunekit/core/_keras_compat.py "
        f"(move it there behind a named function, checked by check_private_api): {uses}"
    )


def test_the_scanner_finds_each_kind_of_private_access():
    flagged = textwrap.dedent('''
        import keras_hub.src.layers
        from keras.src.ops import operation
        from tensorflow.python.distribute import values
        NAMES = ("_sublayer_name",)

        class Tokenizer(keras_hub.tokenizers.BytePairTokenizer):
            def _hook(self):
                super()._keras_hub_hook()
                model._flatten_layers()
                self.model._inputs_struct = None
                getattr(layer, "_key_dense", None)
                object.__setattr__(layer, "_value_dense", 1)
                kwargs.pop("_private_keyword")
                fit(x, _cached=True)
                importlib.import_module("keras_hub.src.utils")
    ''')
    fine = textwrap.dedent('''
        from finetunekit.core.presets import _helper

        class Base:
            def _load(self):
                return self._ready

        class Child(Base):
            def _load(self):
                Child._check()
                getattr(self, "_scales", {})
                object.__setattr__(self, "_compile_args", None)
                return super()._load() + cls._other + "_and_".join(["a", "b"])
    ''')
    found = {key.split(":", 1)[1] for key in private_uses({"flagged.py": flagged})}
    assert found == {
        "keras_hub.src.layers", "keras.src.ops", "tensorflow.python.distribute", "_sublayer_name",
        "_keras_hub_hook", "_flatten_layers", "_inputs_struct", "_key_dense", "_value_dense",
        "_private_keyword", "_cached", "keras_hub.src.utils",
    }
    assert private_uses({"fine.py": fine}) == {}


def test_optimizer_keys_and_tracking():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    optimizer = keras.optimizers.Adam()
    assert not compat.optimizer_tracks(optimizer, dense.trainable_variables)
    optimizer.build(dense.trainable_variables)
    assert compat.optimizer_tracks(optimizer, dense.trainable_variables)
    keys = {compat.optimizer_variable_key(optimizer, v) for v in dense.trainable_variables}
    assert len(keys) == 2
    other = keras.layers.Dense(1)
    other.build((None, 2))
    assert not compat.optimizer_tracks(optimizer, other.trainable_variables)


def test_sublayers_reach_nested_layers():
    inner = keras.Sequential([keras.layers.Dense(2), keras.layers.BatchNormalization()])
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1)])
    kinds = [type(layer).__name__ for layer in compat.sublayers(outer)]
    assert "BatchNormalization" in kinds and kinds.count("Dense") == 2
    assert compat.sublayers(outer, include_self=True) == [outer] + compat.sublayers(outer)


def test_input_structure_and_multi_worker_mode():
    import tensorflow as tf

    image = keras.Input((2,), name="image")
    named = keras.Model({"image": image}, keras.layers.Dense(1)(image))
    assert isinstance(compat.input_structure(named), dict)
    plain = keras.Model(image, keras.layers.Dense(1)(image))
    assert not isinstance(compat.input_structure(plain), dict)
    assert compat.in_multi_worker_mode(tf.distribute.get_strategy()) is False


def test_transformer_sublayers_pair_encoder_and_decoder():
    encoder, decoder = compat._transformer_encoder(), compat._transformer_decoder()
    pairs = compat.transformer_shared_sublayers(encoder, decoder)
    assert len(pairs) == len(compat.TRANSFORMER_SHARED_SUBLAYERS)
    for source, target in pairs:
        assert isinstance(target, type(source))  # a decoder caches its attention: a subclass
        assert [tuple(w.shape) for w in source.weights] == [tuple(w.shape) for w in target.weights]
    cross = compat.transformer_cross_attention_sublayers(decoder)
    assert [type(layer).__name__ for layer in cross] == ["CachedMultiHeadAttention", "LayerNormalization"]


def test_resumed_epoch_and_validation_flag():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    assert compat.resumed_epoch(model) is None
    model._initial_epoch = 3  # what keras.callbacks.BackupAndRestore sets
    assert compat.resumed_epoch(model) == 3
    compat.forget_resumed_epoch(model)
    assert compat.resumed_epoch(model) is None
    assert compat.is_validation_inside_fit({"_use_cached_eval_dataset": True})
    assert not compat.is_validation_inside_fit({})


def test_backup_and_restore_still_sets_the_resumed_epoch(tmp_path):
    """keras.callbacks.BackupAndRestore still records the epoch it resumes from as model._initial_epoch."""
    x, y = np.zeros((4, 1)), np.zeros((4, 1))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    backup = str(tmp_path / "backup")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    try:
        model.fit(x, y, epochs=4, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup), Stop()])
    except RuntimeError:
        pass
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(compat.resumed_epoch(self.model))

    model.fit(x, y, epochs=4, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup), Record()])
    assert seen == [2]  # epochs 0 and 1 finished before the interruption
