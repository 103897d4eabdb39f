"""The sampler a keras-hub generator is compiled with, shared by every generative kind."""


class CompiledGenerator:
    """Mixin of a backbone kind whose `generator()` is a keras-hub task that generates.

    Compiling a keras-hub generator drops its traced generation function, so
    the kind remembers which sampler it compiled last (`_sampler_key`, set to
    None in the kind's `__init__`) and recompiles only when that changes.
    """

    _sampler_key = None

    def generator(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def compiled_generator(self, key, make_sampler):
        """The generator compiled with a sampler, recompiled only when `key` changes.

        Args:
            key: hashable. Names the sampler and its options (e.g. `("greedy", 1, 0)`).
            make_sampler: callable `() -> keras_hub.samplers.Sampler`.

        Returns:
            The keras-hub task of `generator()`, compiled.
        """
        generator = self.generator()
        if self._sampler_key != key:
            generator.compile(sampler=make_sampler())
            self._sampler_key = key
        return generator
