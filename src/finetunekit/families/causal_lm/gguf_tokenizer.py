"""A byte-pair tokenizer built from a GGUF file's vocabulary (keras-hub based)."""

import keras
import keras_hub
import tokenizers
from tokenizers import pre_tokenizers

from finetunekit.core._keras_compat import byte_pair_tokenizer_with_hook

# The word splitting before BPE, by llama.cpp's tokenizer.ggml.pre name. GPT-2's
# rule is byte-level BPE's default; SmolLM first splits every digit apart; Llama 3
# splits numbers into runs of up to three digits.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = ("gpt2", "smollm", "llama-bpe")


@keras.saving.register_keras_serializable(package="finetunekit")
class GGUFBytePairTokenizer(byte_pair_tokenizer_with_hook(keras_hub.tokenizers.BytePairTokenizer)):
    """A GPT-2 style byte-pair tokenizer built from a GGUF file's vocabulary.

    Unlike `keras_hub.models.Llama3Tokenizer`, the start, end and padding
    tokens are arguments (SmolLM2 ends turns with `<|im_end|>`), and every
    token listed in `special_tokens` is never split, so that chat markers such
    as `<|im_start|>` encode as single ids.

    Args:
        vocabulary: dict mapping token strings to ids, or a JSON file path.
        merges: list of merge rules (`"a b"` strings), or a file path.
        bos_token: string or `None`. The start token that the preprocessor
            prepends (`start_token_id`); `None` (models such as SmolLM2 that
            prepend nothing) prepends nothing.
        eos_token: string, the end token (`end_token_id`); generation stops on it.
        pad_token: string or `None`, the padding token (`pad_token_id`). It must
            differ from `eos_token`: keras-hub's `generate` fills the positions
            still to generate with it and stops as soon as it sees an end id
            there. `None` picks the first of `special_tokens` that is not
            `eos_token` (the id only fills masked positions).
        special_tokens: list of strings kept whole when tokenizing (control
            tokens). `bos_token`, `eos_token` and `pad_token` are added.
        pre_tokenizer: how text is split into words before BPE, by llama.cpp's
            `tokenizer.ggml.pre` name: `"gpt2"` (GPT-2's rule, the default),
            `"smollm"` (every digit apart, then GPT-2's rule) or `"llama-bpe"`
            (Llama 3's rule). It applies on the Python path (direct calls,
            `generate`); inside `tf.data` keras-hub's TensorFlow path splits
            with its own GPT-2-like rule.
        **kwargs: passed to `keras_hub.tokenizers.BytePairTokenizer`.

    Example:
    ```python
    tokenizer = GGUFBytePairTokenizer(
        vocabulary={"<s>": 0, "</s>": 1, "a": 2, "b": 3, "ab": 4},
        merges=["a b"], bos_token="<s>", eos_token="</s>",
    )
    tokenizer("ab</s>")  # [4, 1]; pad_token_id is 0 ("<s>")
    ```
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        bos_token=None,
        eos_token=None,
        pad_token=None,
        special_tokens=None,
        pre_tokenizer="gpt2",
        **kwargs,
    ):
        if pre_tokenizer not in PRE_TOKENIZERS:
            raise ValueError(
                f"Unknown pre_tokenizer {pre_tokenizer!r}; known: {', '.join(PRE_TOKENIZERS)}. "
                'Pass one of them ("gpt2" suits most byte-level BPE vocabularies).'
            )
        self.pre_tokenizer = pre_tokenizer
        if eos_token is None:
            raise ValueError(
                "GGUFBytePairTokenizer needs an end token. Received: eos_token=None. "
                "Pass eos_token=<the end-of-text string in the vocabulary>."
            )
        special_tokens = list(special_tokens or [])
        for token in (bos_token, eos_token):
            if token is not None and token not in special_tokens:
                special_tokens.append(token)
        if pad_token is None:
            pad_token = next((t for t in special_tokens if t != eos_token), None)
        if pad_token is None or pad_token == eos_token:
            raise ValueError(
                f"GGUFBytePairTokenizer needs a padding token other than the end token "
                f"{eos_token!r}: keras-hub's generate() pads the positions still to generate "
                "and stops when it finds an end id among them. Pass pad_token=<another "
                "special token>, or list one in special_tokens."
            )
        if pad_token not in special_tokens:
            special_tokens.append(pad_token)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.special_token_strings = special_tokens
        if bos_token is None:
            self.start_token = None
            self.start_token_id = None
        else:
            self._add_special_token(bos_token, "start_token")
        self._add_special_token(eos_token, "end_token")
        self._add_special_token(pad_token, "pad_token")
        named = {bos_token, eos_token, pad_token}
        others = [t for t in special_tokens if t not in named]
        for i, token in enumerate(others):
            # Registered like Llama3Tokenizer's extra tokens, so that
            # generate() strips them from its output.
            self._add_special_token(token, f"special_token_{i:03d}")
        kwargs.setdefault("unsplittable_tokens", list(special_tokens))
        super().__init__(vocabulary=vocabulary, merges=merges, **kwargs)

    def on_vocabulary(self):
        # keras-hub hands its split pattern to `tokenizers` as a plain string,
        # which `tokenizers` matches literally, so its Python path splits no words
        # (it gave "\n    " + "return" where GPT-2's rule gives "\n   " + " return");
        # set a real rule here.
        pre = pre_tokenizers
        byte_level = pre.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=True)
        if self.pre_tokenizer == "smollm":
            steps = [pre.Digits(individual_digits=True), byte_level]
        elif self.pre_tokenizer == "llama-bpe":
            split = pre.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated")
            steps = [
                split,
                pre.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=False),
            ]
        else:
            steps = [byte_level]
        self._tokenizer.pre_tokenizer = pre.Sequence(steps)

    def get_config(self):
        """Returns the tokenizer config (the vocabulary is saved as assets).

        Returns:
            dict: the `BytePairTokenizer` config plus the special tokens.

        Example:
        ```python
        clone = GGUFBytePairTokenizer.from_config(tokenizer.get_config())
        clone.set_vocabulary_and_merges(tokenizer.vocabulary, tokenizer.merges)
        ```
        """
        config = super().get_config()
        config.update(
            {
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
                "pad_token": self.pad_token,
                "special_tokens": list(self.special_token_strings),
                "pre_tokenizer": self.pre_tokenizer,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds the tokenizer from `get_config()`'s dict.

        Args:
            config: dict returned by `get_config`.

        Returns:
            GGUFBytePairTokenizer: without a vocabulary unless the config
            carries one (Keras restores it from the saved assets).

        Example:
        ```python
        clone = GGUFBytePairTokenizer.from_config(tokenizer.get_config())
        ```
        """
        return super().from_config(config)
