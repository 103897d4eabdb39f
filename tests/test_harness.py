"""Every registered backbone kind x every head through the same checks (tests/harness.py)."""

import numpy as np
import pytest

import finetunekit as fk
from tests.harness import (
    BACKBONE_CASES,
    HEAD_CASES,
    SLOW,
    TASK_CALLS,
    build,
    check_task,
    data,
    export_pairs,
    matrix,
    matrix_params,
)

EXPORTED = export_pairs()


def _head_classes(cls=fk.heads.Head):
    """Every Head subclass in finetunekit and in the plugin families under tests/plugins."""
    for sub in cls.__subclasses__():
        if sub.__module__.startswith(("finetunekit.", "tests.plugins.")):
            yield sub
        yield from _head_classes(sub)


def test_every_backbone_kind_has_a_harness_case():
    kinds = [kind.name for kind in fk.backbones.backbone_kinds()]
    assert set(kinds) >= {"applications", "keras_model", "text_encoder"}
    assert [k for k in kinds if k not in BACKBONE_CASES] == []


def _registered_heads():
    """Heads every registered family declares: the built-in ones and the plugins in tests/plugins."""
    from finetunekit.core.family import head_classes

    return set(head_classes())


def test_every_head_has_a_harness_case():
    # bases live in core/ and generation/ (PooledHead, SpatialHead, NextTokenHead); heads in families/
    concrete = {c.__name__ for c in _head_classes() if c.__module__.startswith("finetunekit.families.")}
    registered = _registered_heads()
    assert registered <= {c.__name__ for c in _head_classes()}  # every registered head is a Head
    assert "OrdinalHead" in registered  # the plugin under tests/plugins was found and registered
    concrete |= registered
    covered = {name.split("/")[0] for name in HEAD_CASES}
    assert concrete and concrete <= covered, f"heads without a harness case: {concrete - covered}"


def test_every_task_method_has_a_harness_call():
    methods = {name for cls in _head_classes() for name in cls.task_methods}
    assert methods and methods <= set(TASK_CALLS), f"no TASK_CALLS entry: {methods - set(TASK_CALLS)}"


@pytest.mark.parametrize("kind", list(BACKBONE_CASES))
def test_a_kind_refuses_every_head_it_does_not_run(kind):
    """Every family x every kind it accepts: a head outside `matrix()` for a kind is refused."""
    modality = BACKBONE_CASES[kind].modality
    options = BACKBONE_CASES[kind].options()  # one backbone: each refusal comes before training
    for name, case in HEAD_CASES.items():
        if modality in case.modalities:  # accepted (a case's `backbones` only trims the run)
            continue
        with pytest.raises(ValueError) as refused:
            fk.FineTuner(head=case.make(), **options)
        assert "backbone" in str(refused.value), (name, refused.value)  # says what is missing


def test_slow_pairs_are_in_the_matrix():
    assert SLOW <= set(matrix())


@pytest.mark.parametrize("kind,head", matrix_params())
def test_task(kind, head, tmp_path):
    case = HEAD_CASES[head]
    x, y = data(kind, case)
    check_task(build(kind, case), x, y, tmp_path, case, export=(kind, head) in EXPORTED)


def test_export_pairs_serve_every_kind_and_head():
    assert {kind for kind, _ in EXPORTED} == set(BACKBONE_CASES)
    assert {head for _, head in EXPORTED} == {head for kind, head in matrix()
                                              if (kind, head) not in SLOW}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,head", [pair for pair in matrix() if pair not in EXPORTED and pair not in SLOW]
)
def test_export(kind, head, tmp_path):
    """The pairs the default run does not export (`export_pairs`), served."""
    case = HEAD_CASES[head]
    x, y = data(kind, case)
    check_task(build(kind, case), x, y, tmp_path, case)


@pytest.mark.parametrize("kind", list(BACKBONE_CASES))
def test_mixed_precision_outputs_float32(kind):
    case = HEAD_CASES[BACKBONE_CASES[kind].default_head]
    ft = build(kind, case, mixed_precision="bfloat16")
    x, y = data(kind, case)
    ft.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert ft.backbone.compute_dtype == "bfloat16" or any(
        layer.compute_dtype == "bfloat16" for layer in ft.backbone.layers
    )
    outputs = ft.predict(x, verbose=0)
    assert outputs.dtype == np.float32 and np.isfinite(outputs).all()
