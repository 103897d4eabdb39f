"""Text cleaning that runs inside `tf.data`: invalid UTF-8, HTML tags, unicode and whitespace."""

import numpy as np

_HTML_TAG = r"<[^>]{0,200}>"


def to_utf8_bytes(value):
    """Converts one text value to UTF-8 bytes without ever raising.

    Args:
        value: str, bytes, numpy scalar or anything with `str()`. `None` and
            NaN become the empty string.

    Returns:
        bytes. Invalid UTF-8 in `bytes` input is kept as is (it is replaced by
        U+FFFD in the pipeline, see `sanitize_utf8`); lone surrogates in
        `str` input are replaced.

    Example:
    ```python
    to_utf8_bytes("café")      # b"caf\\xc3\\xa9"
    to_utf8_bytes(b"\\xff ok")  # b"\\xff ok"
    ```
    """
    if value is None:
        return b""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value)
    if isinstance(value, float) and value != value:  # NaN in a DataFrame column
        return b""
    return str(value).encode("utf-8", errors="replace")


def sanitize_utf8(strings):
    """Replaces invalid UTF-8 sequences of a string tensor with U+FFFD (never raises).

    Args:
        strings: a `tf.string` tensor of any shape.

    Returns:
        A `tf.string` tensor of valid UTF-8.
    """
    import tensorflow as tf

    return tf.strings.unicode_transcode(
        strings, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
    )


def clean_text(strings, html=True, unicode_form="NFKC", whitespace=True):
    """Cleans a string tensor: HTML tags, unicode normalisation, whitespace.

    Runs in TensorFlow, so it works inside `tf.data` on any backend.

    Args:
        strings: a `tf.string` tensor of valid UTF-8 (see `sanitize_utf8`).
        html: bool. Replace HTML tags (`<br />`, `<p>`, ...) by a space and
            unescape `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;`, `&nbsp;`.
            Defaults to `True`.
        unicode_form: str or None. Unicode normalisation form (`"NFKC"`,
            `"NFC"`, ...), or None for none. Defaults to `"NFKC"`.
        whitespace: bool. Collapse runs of whitespace into one space and strip
            both ends. Defaults to `True`.

    Returns:
        A `tf.string` tensor of the same shape.

    Example:
    ```python
    clean_text(tf.constant(["<b>Great</b>\\n\\n film&amp;fun"]))  # [b"Great film&fun"]
    ```
    """
    import tensorflow as tf

    if html:
        strings = tf.strings.regex_replace(strings, _HTML_TAG, " ")
        for entity, char in (
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&quot;", '"'),
            ("&#39;", "'"),
            ("&nbsp;", " "),
            ("&amp;", "&"),
        ):
            strings = tf.strings.regex_replace(strings, entity, char)
    if unicode_form:
        import tensorflow_text as tf_text

        strings = tf_text.normalize_utf8(strings, unicode_form)
    if whitespace:
        strings = tf.strings.regex_replace(strings, r"\s+", " ")
        strings = tf.strings.strip(strings)
    return strings
