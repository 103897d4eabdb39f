"""The shape of the code: module and function sizes, and imports that point one way."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "src" / "finetunekit"
MAX_FUNCTION_CODE_LINES = 60

#: Layers, lowest first: a module may import its own layer and the ones before it.
#: Families sit in one layer, and a family never imports another family.
LAYERS = [
    ("core", {"core", "version"}),
    ("training", {"training"}),
    ("generation", {"generation"}),
    ("families", {"families"}),
    ("tuner", {"tuner"}),
    ("public namespaces", {"backbones", "heads", "layers", "data"}),
    ("cli", {"cli", "__main__"}),
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


def family_of(module_name):
    """The family folder of a module (`"detection"`), or None outside `families/`."""
    parts = module_name.split(".")
    return parts[1] if parts[0] == "families" and len(parts) > 1 else None


def wrong_imports(name, targets):
    """Imports of module `name` that break the layer order or cross families."""
    wrong = []
    own = layer_of(name)
    for target in targets:
        if layer_of(target) > own:
            wrong.append(f"{name} ({LAYERS[own][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
        elif family_of(name) and family_of(target) and family_of(target) != family_of(name):
            wrong.append(f"{name} (family {family_of(name)}) imports {target} (family {family_of(target)})")
    return wrong


def test_imports_point_one_way():
    wrong = []
    for path in modules():
        name = relative_name(path)
        if name in ("__init__", "version", "families"):
            continue  # the package root re-exports the public surface; families lists them
        wrong += wrong_imports(name, imported_modules(ast.parse(path.read_text())))
    assert not wrong, "Imports against the layer order:\n" + "\n".join(wrong)


def module_graph():
    """`{module: modules it imports}` over finetunekit, lazy imports included."""
    known = {relative_name(path) for path in modules()}
    graph = {}
    for path in modules():
        name, targets = relative_name(path), set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "finetunekit" or node.module.startswith("finetunekit.")
            ):
                base = node.module[len("finetunekit."):] if node.module != "finetunekit" else ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}".strip(".")
                    targets.add(sub if sub in known else base)
            elif isinstance(node, ast.Import):
                targets |= {a.name[len("finetunekit."):] for a in node.names
                            if a.name.startswith("finetunekit.")}
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def circles(graph):
    """Every import circle of `graph`, as "a -> b -> a" strings."""
    found = set()
    for start in graph:
        stack, seen = [(start, [start])], {start}
        while stack:
            node, trail = stack.pop()
            for target in graph.get(node, ()):
                if target == start:
                    found.add(" -> ".join(trail + [start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, trail + [target]))
    return sorted(found)


def test_no_import_circles():
    """No module imports itself through others (lazy, function-level imports included)."""
    graph = module_graph()
    graph.pop("__init__", None)  # the package root resolves public names lazily
    found = circles(graph)
    assert not found, "Import circles:\n" + "\n".join(found[:20])


def test_the_checks_can_fail(tmp_path):
    """The size and layer checks detect a long function and an upward import."""
    source = "def f():\n" + "    x = 1\n" * 61
    tree = ast.parse(source)
    assert code_lines(tree.body[0], source.splitlines()) > MAX_FUNCTION_CODE_LINES
    upward = ast.parse("from finetunekit.tuner.fine_tuner import FineTuner\n")
    assert layer_of(imported_modules(upward)[0]) > layer_of("core.data.pipeline")
    assert wrong_imports("families.detection.readers", ["families.segmentation.masks"])
    assert not wrong_imports("families.detection.head", ["families.detection.readers", "core.head"])
    assert wrong_imports("core.kind", ["training.stages"])
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == ["a -> b -> a", "b -> a -> b"]
