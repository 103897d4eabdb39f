"""Runs one benchmark script against two revisions of finetunekit, alternating, in one run.

Before/after figures for a refactor: each revision's `src/` is put first on
PYTHONPATH in turn, the same benchmark command runs `--repeats` times per
revision (interleaved: before, after, before, after, ...), and every run's
output is printed under its label, so machine drift hits both revisions alike.

    git worktree add /tmp/before <old-commit>
    python benchmarks/compare_revisions.py --before /tmp/before -- \
        benchmarks/image_overhead.py --size 96 --examples 256 --rounds 3 --epochs 2

The benchmark script itself is taken from the current checkout, so both
revisions run exactly the same measuring code.
"""

import argparse
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(src, command):
    """Runs `command` (a benchmark script and its arguments) with `src` first on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode:
        lines.append(f"[exit {done.returncode}] {done.stderr.strip().splitlines()[-1:]}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="checkout of the older revision")
    parser.add_argument("--repeats", type=int, default=1, help="runs per revision")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- script.py [args]")
    args = parser.parse_args(argv)
    command = [c for c in args.command if c != "--"]
    revisions = {"before": pathlib.Path(args.before) / "src", "after": ROOT / "src"}
    for repeat in range(args.repeats):
        for label, src in revisions.items():
            print(f"===== {label} (run {repeat + 1}/{args.repeats}): {' '.join(command)}", flush=True)
            for line in run(src, command):
                print(f"{label:>6} | {line}", flush=True)


if __name__ == "__main__":
    main()
