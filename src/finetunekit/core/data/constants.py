"""Names and values shared by the readers and pipelines of every modality."""

#: File extensions read as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: DataFrame / table column names taken as labels (case-insensitive), in order of preference.
LABEL_COLUMNS = (
    "label", "labels", "target", "targets", "y", "class", "category", "tags", "ner_tags",
)
#: Target value of positions that carry no label (sub-word continuations, special tokens, padding).
IGNORE_INDEX = -100
