"""The declared plugin of a task family: which kinds and heads one folder adds.

Each folder of `finetunekit.families` ends its `__init__.py` with one
`register_family(Family(...))` line. Registering a family registers its
backbone kinds with `resolve_backbone` and its heads in the head table that
the command line, the docs and the shared test harness read.
"""

import dataclasses

from finetunekit.core.kind import load_families, register_backbone_kind

_FAMILIES = {}


@dataclasses.dataclass(frozen=True)
class Family:
    """What one task family adds to finetunekit.

    Args:
        name: str. The family's name, its folder's name (`"detection"`).
        description: str. One line for tables and errors.
        kinds: tuple of `BackboneKind` subclasses the family adds. Defaults to `()`.
        heads: tuple of `Head` subclasses the family adds. Defaults to `()`.

    Example:
    ```python
    register_family(Family("ordinal", "ordinal regression", heads=(OrdinalHead,)))
    ```
    """

    name: str
    description: str
    kinds: tuple = ()
    heads: tuple = ()


def register_family(family):
    """Registers a family: its kinds with `resolve_backbone`, its heads by name.

    Args:
        family: a `Family`.

    Returns:
        `family`.

    Raises:
        ValueError: another family already registered a head of the same
            class name.
    """
    for kind in family.kinds:
        register_backbone_kind(kind)
    taken = {head.__name__: name for name, other in _FAMILIES.items() if name != family.name
             for head in other.heads}
    clash = [head.__name__ for head in family.heads if head.__name__ in taken]
    if clash:
        raise ValueError(
            f"Family {family.name!r} registers head(s) {', '.join(clash)} that family "
            f"{taken[clash[0]]!r} already registered; give the head another class name."
        )
    _FAMILIES[family.name] = family
    return family


def families():
    """The registered families, `{name: Family}`, built-in ones included."""
    load_families()
    return dict(_FAMILIES)


def head_classes():
    """Every registered head class, `{class name: class}`."""
    return {head.__name__: head for family in families().values() for head in family.heads}
