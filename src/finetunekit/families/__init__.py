"""The built-in task families: one folder each, with its registration in `plugin.py`.

`finetunekit.core.kind.load_families` imports each `BUILTIN` family's plugin
on first use. A family's `__init__.py` imports nothing, so that reading one
family's files (a reader, a plot) loads neither Keras nor the other families.
Families never import each other; what two share lives in `finetunekit.core`,
`finetunekit.training` or `finetunekit.generation`.
"""

#: The built-in families, by folder name.
BUILTIN = (
    "causal_lm",
    "classification",
    "detection",
    "image",
    "recommendation",
    "segmentation",
    "seq2seq",
    "speech",
    "text",
    "vector",
)
