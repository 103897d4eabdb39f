"""`FineTuner(augment=...)`: one entry point, with each family's keywords registered by the family.

A family that augments its inputs registers a table of keywords and a builder
(`register_augmentation`); `build_augmentation` takes `None`, Keras layers, or
a keyword dict and hands the dict to the family whose keywords it names. The
image family's keywords are the default (ImageDataGenerator's vocabulary).
"""

import keras

_AUGMENTERS = {}  # modality -> (keywords, matches, build)
_DEFAULT = []


def register_augmentation(modality, keywords, build, matches=None, default=False):
    """Registers the augmentation keywords of one input modality.

    Args:
        modality: str. `"image"`, `"audio"`, `"text"`, ...
        keywords: dict. Keyword -> short description (listed in errors).
        build: callable `build(augment) -> list of layers` for a keyword dict
            (or, for the default modality, also a preset name such as
            `"default"`).
        matches: callable `matches(augment) -> bool`: does a keyword dict
            belong to this modality? Defaults to "every key is one of
            `keywords`".
        default: bool. The builder for anything no other modality claims.
            Defaults to `False`.

    Returns:
        None.

    Example:
    ```python
    register_augmentation("audio", {"noise": "std"}, build=my_layers)
    ```
    """
    if matches is None:
        def matches(augment):
            return isinstance(augment, dict) and bool(augment) and set(augment) <= set(keywords)
    _AUGMENTERS[modality] = (dict(keywords), matches, build)
    if default:
        _DEFAULT[:] = [modality]


def augmentation_keywords():
    """The registered keyword tables: `{modality: {keyword: description}}`."""
    return {modality: entry[0] for modality, entry in _AUGMENTERS.items()}


def build_augmentation(augment):
    """Builds the list of augmentation layers for `FineTuner(augment=...)`.

    Args:
        augment: `None` (no augmentation), a Keras layer or a list of them,
            `"default"` or a dict of image keywords (ImageDataGenerator-style),
            or a dict of another modality's keywords (audio: `noise`,
            `gain_db`, ...; text: `word_deletion`, ...).

    Returns:
        A list of Keras layers (possibly empty).

    Raises:
        ValueError: for an unknown keyword (the message lists the known ones),
            a value out of range, or a list holding something else than layers.

    Example:
    ```python
    layers = build_augmentation({"rotation_range": 20, "horizontal_flip": True})
    ```
    """
    if augment is None or augment is False:
        return []
    if isinstance(augment, keras.layers.Layer):
        return [augment]
    if isinstance(augment, (list, tuple)):
        for layer in augment:
            if not isinstance(layer, keras.layers.Layer):
                raise ValueError(
                    "`augment` given as a list must hold Keras layers. "
                    f"Received an item of type {type(layer).__name__}: {layer!r}"
                )
        return list(augment)
    _load_families()
    for modality, (_, matches, build) in _AUGMENTERS.items():
        if modality not in _DEFAULT and matches(augment):
            return build(augment)
    if not _DEFAULT:  # pragma: no cover - the image family registers the default
        raise ValueError(f"No augmentation is registered for augment={augment!r}.")
    return _AUGMENTERS[_DEFAULT[0]][2](augment)


def _load_families():
    from finetunekit.core.kind import load_families

    load_families()
