"""examples/quickstart.ipynb runs in smoke mode, learns, and is shipped with its outputs.

`python tests/test_notebook.py` executes the notebook (smoke mode) and writes
it back with its outputs.
"""

import os
import re
import sys

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "examples", "quickstart.ipynb")
# TensorFlow's C++ notices, written to the kernel's stderr before its logging starts.
TF_NOTICE = re.compile(r"^(?:WARNING: All log messages before absl|[IWE]0000 ).*\n?", re.M)
# Notices of the machine that executed the notebook, not of finetunekit (tqdm without ipywidgets).
MACHINE_NOTICE = re.compile(r"^.*TqdmWarning: IProgress not found.*\n(?:  from .*\n)?", re.M)


def execute(path=PATH):
    """Runs the notebook in smoke mode; returns it with outputs (TF start-up notices removed)."""
    os.environ["FINETUNEKIT_SMOKE"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", record_timing=False).execute(
        cwd=os.path.dirname(path)
    )
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.metadata.pop("execution", None)  # timestamps of an earlier run
            for output in cell.outputs:
                if output.output_type == "stream":
                    output.text = MACHINE_NOTICE.sub("", TF_NOTICE.sub("", output.text))
            cell.outputs = [o for o in cell.outputs if o.get("text", True) != ""]
    return notebook


def _printed(notebook):
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def _accuracies(text):
    validation = re.search(r"validation accuracy after \d+ epochs: ([\d.]+)", text)
    test = re.search(r"test accuracy: ([\d.]+)", text)
    assert validation and test, text[-2000:]
    return float(validation.group(1)), float(test.group(1))


def test_quickstart_notebook_learns_in_smoke_mode(monkeypatch):
    """Executes top to bottom offline and clearly beats chance (1/3) on held-out images."""
    monkeypatch.setenv("FINETUNEKIT_SMOKE", "1")
    text = _printed(execute())
    assert "classification report on 23 examples" in text  # the test split, not training data
    validation, test = _accuracies(text)
    assert validation >= 0.8 and test >= 0.8, text[-2000:]


def test_quickstart_is_shipped_executed_and_consistent():
    notebook = nbformat.read(PATH, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "run python tests/test_notebook.py"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    text = _printed(notebook)
    assert min(_accuracies(text)) >= 0.8
    assert not TF_NOTICE.search(text)
    source = "\n".join(c.source for c in code)
    prose = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert 'os.environ.get("FINETUNEKIT_SMOKE", "1") == "1"' in source
    assert "FINETUNEKIT_SMOKE=0" in prose and "SMOKE = " not in prose  # how to switch modes
    assert not re.search(r"[\"']\d+\.(png|jpg)[\"']", source)  # no hard-coded file names
    assert "evaluate(test_paths, test_labels" in source


if __name__ == "__main__":
    nbformat.write(execute(), PATH)
    sys.exit(0)
