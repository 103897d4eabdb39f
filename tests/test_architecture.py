"""The shape of the code: module and function sizes, and imports that point one way."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "src" / "finetunekit"
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 60

#: Layers, lowest first: a module may import its own layer and the ones before it.
LAYERS = [
    ("core", {"version", "precision", "text_cleaning", "_keras_compat", "distribution",
              "plotting", "files", "file_checks", "segmentation_plots", "families"}),
    ("data", {"data"}),
    ("preprocessing", {"layers"}),
    ("backbones", {"backbones", "freezing"}),
    ("heads", {"heads", "losses"}),
    ("training", {"training", "optimizers", "schedules", "callbacks", "caching",
                  "feature_store", "lr_finder", "checkpoints"}),
    ("evaluation/saving/export", {"reports", "saving", "export"}),
    ("orchestration", {"fine_tuner", "inference", "rl"}),
    ("cli", {"cli", "cli_args", "cli_commands", "cli_predict", "cli_tasks", "demo", "__main__"}),
]


def modules():
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def layer_of(module_name):
    top = module_name.split(".")[0]
    for index, (_, names) in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"finetunekit.{module_name} is in no layer of LAYERS; add it.")


def relative_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_small(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines (> {MAX_MODULE_LINES})"


def code_lines(node, source_lines):
    """Lines of code in a function: no blank lines, comments or docstrings."""
    skip = set()
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        skip |= set(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number in range(node.lineno, node.end_lineno + 1):
        text = source_lines[number - 1].strip()
        if number in skip or not text or text.startswith("#"):
            continue
        count += 1
    return count


def test_functions_are_short():
    too_long = []
    for path in modules():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = code_lines(node, lines)
                if count > MAX_FUNCTION_CODE_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({count})")
    assert not too_long, "Functions over 60 lines of code:\n" + "\n".join(too_long)


def imported_modules(tree):
    """finetunekit modules a module imports (at any depth, lazy imports included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("finetunekit.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("finetunekit."):
                found.append(node.module)
            elif node.module == "finetunekit":
                found += [f"finetunekit.{a.name}" for a in node.names]
    return [name[len("finetunekit."):] for name in found]


def test_imports_point_one_way():
    wrong = []
    for path in modules():
        name = relative_name(path)
        if name in ("__init__", "version"):
            continue  # the package root re-exports the public surface
        own = layer_of(name)
        for target in imported_modules(ast.parse(path.read_text())):
            if layer_of(target) > own:
                wrong.append(
                    f"{name} ({LAYERS[own][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not wrong, "Imports against the layer order:\n" + "\n".join(wrong)


def test_the_checks_can_fail(tmp_path):
    """The size and layer checks detect a long function and an upward import."""
    source = "def f():\n" + "    x = 1\n" * 61
    tree = ast.parse(source)
    assert code_lines(tree.body[0], source.splitlines()) > MAX_FUNCTION_CODE_LINES
    upward = ast.parse("from finetunekit.fine_tuner import FineTuner\n")
    assert layer_of(imported_modules(upward)[0]) > layer_of("data.pipeline")
