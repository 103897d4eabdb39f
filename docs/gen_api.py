"""Writes docs/api.md, the API reference, from the public names of finetunekit.

The reference lists every name of `finetunekit.__all__` and the public names
of its sub-modules (their `__all__`, or else every top-level class, function
and constant whose name does not start with "_"), each rendered from its
docstring by mkdocstrings. Names are read from the source with `ast`, so
nothing heavy is imported. Run it after changing a public name:

    python docs/gen_api.py            # rewrites docs/api.md
    python docs/gen_api.py --check    # exit 1 when docs/api.md is out of date

tests/test_docs.py fails when docs/api.md is out of date or a public name
lacks a docstring.
"""

import ast
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(DOCS), "src")
API_MD = os.path.join(DOCS, "api.md")

# FineTuner methods inherited from keras.Model that the README and guides use.
INHERITED = {
    "summary": "prints the layers",
    "count_params": "the number of parameters",
}


# Descriptions of public names whose source has no docstring (constants, and
# packages without a module docstring). A docstring in the source wins.
DESCRIPTIONS = {
    "finetunekit.APPLICATIONS": "The backbone table: every `keras.applications` constructor "
    "under its normalised name (lower case, letters and digits only, e.g. `\"resnet50\"`), "
    "as a `finetunekit.backbones.BackboneSpec` with its native input size, its "
    "`preprocess_input` mode and its block pattern. Look names up with `fk.get_application`.",
    "finetunekit.backbones.APPLICATIONS": "The backbone table (the same object as "
    "`fk.APPLICATIONS`).",
    "finetunekit.backbones.BACKBONE_OUTPUTS": "The named outputs a backbone kind can give a "
    "head: `\"features\"`, `\"padding_mask\"`, `\"pyramid\"` (`P2`..`P5`) and `\"images\"` "
    "(the preprocessed input of an image backbone).",
    "finetunekit.heads.TARGET_LAYOUTS": "How a head's targets are laid out: `\"example\"`, "
    "`\"token\"` (one per word, aligned to sub-words) or `\"spatial\"` (masks, boxes).",
    "finetunekit.training.callbacks.ON_NAN_MODES": "The values `fit(on_nan=...)` accepts: `\"raise\"` "
    "(stop with `fk.TrainingDivergedError`), `\"warn\"` (stop and warn) or `None` (no check).",
    "finetunekit.layers.AUGMENT_KEYWORDS": "The ImageDataGenerator-style keywords that "
    "`FineTuner(augment={...})` accepts, each with a description of its value.",
    "finetunekit.training.schedules.SCHEDULES": "The learning-rate schedules of "
    "`FineTuner.compile(schedule=...)`: `\"constant\"` and `\"cosine\"` (warm-up, then cosine "
    "decay).",
    "finetunekit.data": "Data sources: class folders and image files (`list_image_folder`, "
    "`check_images`, `BadImageError`) and TensorFlow Datasets (`TFDS`).",
    "finetunekit.heads": "Task heads that go on top of a backbone: classification (single- and "
    "multi-label), regression and token classification (NER), and the `Head` base class.",
    "finetunekit.layers": "Keras layers inside the model: image formatting and normalisation, "
    "and training-only augmentation built from ImageDataGenerator-style keywords.",
}

# Public objects outside the exported modules that exported names return or take.
EXTRA = ["finetunekit.backbones.BackboneSpec"]


def module_file(module):
    """The source file of a module or package of `src/`."""
    path = os.path.join(SRC, *module.split("."))
    return os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"


def _tree(module):
    with open(module_file(module), encoding="utf-8") as f:
        return ast.parse(f.read())


def _literal_all(tree):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return None


def public_names(module):
    """`__all__` of a module, or its own public classes, functions and constants."""
    tree = _tree(module)
    names = _literal_all(tree)
    if names is not None:
        return names
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.append(node.name)
        elif isinstance(node, ast.Assign):
            found += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return [n for n in found if not n.startswith("_")]


def submodule_paths():
    """`fk.NAME` -> the module it is (`finetunekit._SUBMODULES`, read from the source)."""
    for node in _tree("finetunekit").body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_SUBMODULES" for t in targets):
                return dict(ast.literal_eval(node.value))
    return {}


def submodules():
    """The sub-modules that `finetunekit.__all__` exports, in its order."""
    paths = submodule_paths()
    return [n for n in public_names("finetunekit") if n in paths]


def submodule(sub):
    """The module of `fk.SUB` (`"caching"` -> `"finetunekit.training.caching"`)."""
    return submodule_paths()[sub]


def defining_module(module, name):
    """Follows `from X import name` in `module` to the module that defines `name`."""
    tree = _tree(module)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if any(alias.name == name and alias.asname is None for alias in node.names):
                if os.path.exists(module_file(node.module)):
                    return defining_module(node.module, name)
    return module


def definition(module, name):
    """The `ast` node that defines `name` (class, function or assignment), or None."""
    for node in _tree(defining_module(module, name)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return node
    return None


def source_docstring(module, name=None):
    """The docstring of a module, or of `name` in it (for a constant: the string
    literal after it or the `#:` comment lines before it); None when there is none."""
    if name is None:
        return ast.get_docstring(_tree(module))
    where = defining_module(module, name)
    with open(module_file(where), encoding="utf-8") as f:
        lines = f.read().splitlines()
    body = _tree(where).body
    for i, node in enumerate(body):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_docstring(node)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            after = body[i + 1] if i + 1 < len(body) else None
            if isinstance(after, ast.Expr) and isinstance(getattr(after.value, "value", None), str):
                return after.value.value
            comments = []
            for line in reversed(lines[: node.lineno - 1]):
                if not line.startswith("#:"):
                    break
                comments.insert(0, line[2:].strip())
            return " ".join(comments) or None
    return None


def documented_names():
    """`(identifier, module, name)` of every public name; name is None for a module."""
    found = [("finetunekit", "finetunekit", None)]
    subs = submodules()
    for name in public_names("finetunekit"):
        if name != "__version__" and name not in subs:
            found.append((f"finetunekit.{name}", "finetunekit", name))
    for sub in subs:
        module = submodule(sub)
        found.append((module, module, None))
        found += [(f"{module}.{name}", module, name) for name in public_names(module)]
    return found


def missing_docs():
    """Identifiers with neither a docstring in the source nor an entry in DESCRIPTIONS."""
    return [
        identifier for identifier, module, name in documented_names()
        if not source_docstring(module, name) and identifier not in DESCRIPTIONS
    ]  # fmt: skip


def public_methods(module, class_name):
    """Public methods (and properties) defined in the class body itself."""
    node = definition(module, class_name)
    return [
        item.name for item in node.body
        if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
        and item.name not in ("get_config", "from_config", "train_step", "test_step",
                              "compile_from_config")
    ]  # fmt: skip


def _entry(identifier, members=None, level=3):
    """A mkdocstrings directive (modules at heading level 2, their names at 3)."""
    lines = [f"::: {identifier}", "    options:", f"      heading_level: {level}"]
    if members is not None:
        lines.append(f"      members: [{', '.join(members)}]")
    text = "\n".join(lines) + "\n"
    if identifier in DESCRIPTIONS and not _source_documents(identifier):
        text += "\n" + DESCRIPTIONS[identifier] + "\n"
    return text


def _source_documents(identifier):
    for documented, module, name in documented_names():
        if documented == identifier:
            return bool(source_docstring(module, name))
    return True


def _top_level_section():
    top = [n for n in public_names("finetunekit") if n not in submodules() + ["__version__"]]
    out = [_entry("finetunekit", members=[], level=2)]
    out.append("`fk.__version__` is the version string.\n")
    for name in top:
        if name == "FineTuner":
            methods = public_methods("finetunekit.tuner.fine_tuner", "FineTuner")
            entry = _entry("finetunekit.FineTuner", methods)
            out.append(entry.replace("    options:\n", "    options:\n      inherited_members: true\n"))
            inherited = "; ".join(f"`{k}`: {v}" for k, v in INHERITED.items())
            out.append(f"Inherited from `keras.Model` (see its documentation): {inherited}.\n")
        else:
            out.append(_entry(f"finetunekit.{name}"))
    return out


def _module_section(sub):
    module = submodule(sub)
    top = set(public_names("finetunekit"))
    out = [_entry(module, members=[], level=2)]
    for name in public_names(module):
        if name in top:  # documented once, under finetunekit
            out.append(f"`{module}.{name}` is [`fk.{name}`](#finetunekit.{name}).\n")
        else:
            out.append(_entry(f"{module}.{name}"))
    return out


def render():
    """The text of docs/api.md."""
    out = [
        "# API reference\n",
        "<!-- Generated by docs/gen_api.py from the public names; do not edit. -->\n",
        "Every public name of `finetunekit` (`import finetunekit as fk`) and of its "
        "sub-modules, generated from `__all__` and the docstrings.\n",
    ]
    out += _top_level_section()
    for sub in submodules():
        out += _module_section(sub)
    out.append("## Also used by the names above\n")  # no module: a plain heading
    out += [_entry(identifier) for identifier in EXTRA]
    return "\n".join(out)


def main(argv):
    text = render()
    if "--check" in argv:
        with open(API_MD, encoding="utf-8") as f:
            stale = f.read() != text
        if stale:
            print("docs/api.md is out of date: run python docs/gen_api.py", file=sys.stderr)
        return int(stale)
    with open(API_MD, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
