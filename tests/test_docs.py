import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_build_strict(tmp_path):
    """The docs site (guides + API reference from docstrings) builds with --strict."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()
    html = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "predict_labels" in html and "ClassificationHead" in html
    for anchor in ("finetunekit.FineTuner.export", "finetunekit.FineTuner.find_lr", "finetunekit.data.TFDS"):
        assert f'id="{anchor}"' in html, anchor


def _gen_api():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_api", os.path.join(ROOT, "docs", "gen_api.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _api_md():
    with open(os.path.join(ROOT, "docs", "api.md"), encoding="utf-8") as f:
        return f.read()


def test_api_md_is_generated_from_the_public_names():
    assert _gen_api().render() == _api_md(), "docs/api.md is out of date: run python docs/gen_api.py"


def test_every_public_name_is_documented():
    gen_api, text = _gen_api(), _api_md()
    undocumented = []
    for identifier, module, name in gen_api.documented_names():
        reexport = name is not None and f"](#finetunekit.{name})" in text
        if f"::: {identifier}\n" not in text and not (module != "finetunekit" and reexport):
            undocumented.append(identifier)
    assert undocumented == [], f"public names missing from docs/api.md: {undocumented}"
    assert gen_api.missing_docs() == [], "public names without a docstring or a description"


def test_static_public_names_match_the_package():
    import importlib

    import finetunekit

    gen_api = _gen_api()
    assert gen_api.public_names("finetunekit") == finetunekit.__all__
    for sub in gen_api.submodules():
        module = importlib.import_module(gen_api.submodule(sub))
        assert module is getattr(finetunekit, sub)
        names = gen_api.public_names(gen_api.submodule(sub))
        assert names == getattr(module, "__all__", names)
        assert all(hasattr(module, name) for name in names), sub


def test_readme_methods_are_in_the_api_reference():
    import re

    gen_api, text = _gen_api(), _api_md()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    used = set(re.findall(r"\bft2?\.(\w+)\(", readme)) | {"export", "find_lr"}
    members = re.search(r"::: finetunekit\.FineTuner\n    options:\n(?:      .*\n)*?      members: \[(.*)\]", text)
    documented = set(members.group(1).split(", ")) | set(gen_api.INHERITED)
    assert used <= documented, used - documented
    assert {"fit", "fine_tune", "predict_labels", "save"} <= used  # the snippet is parsed
