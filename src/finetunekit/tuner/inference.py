"""Evaluation, prediction, export and saving of a `FineTuner` (a mixin of the FineTuner class)."""

from finetunekit.core._keras_compat import is_validation_inside_fit
from finetunekit.training import pop_data_options


class InferenceMixin:
    """`evaluate`, `predict`, `predict_labels`, `export` and atomic `save` / `save_weights`.

    Inputs go through the backbone kind's data pipeline, outputs through the
    head's `decode`; `FineTuner` puts this mixin before `keras.Model`.
    """

    # ------------------------------------------------------- evaluate/predict
    def evaluate(self, x=None, y=None, batch_size=None, report=False, **kwargs):
        """Evaluates on data in any form `fit` accepts; returns Keras' loss and metrics.

        With `report=True`, returns the head's `fk.Report` instead (see `fk.report`).
        """
        if is_validation_inside_fit(kwargs):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        data = pop_data_options(kwargs)
        if report:
            from finetunekit.core.reports import report as make_report

            return make_report(self, x, y, batch_size=batch_size, **data)
        self._ensure_compiled()
        sample_weight = kwargs.pop("sample_weight", None)
        prepared = self._prepare(x, y, batch_size, sample_weight=sample_weight, **data)
        return super().evaluate(**prepared.train.fit_arguments(batch_size), **kwargs)

    def _predict_prepared(self, x, batch_size, verbose, kwargs):
        prepared = self._prepare(x, None, batch_size, require_labels=False, **pop_data_options(kwargs))
        train = prepared.train
        batch_size = None if train.is_dataset else batch_size
        outputs = super().predict(train.x, batch_size=batch_size, verbose=verbose, **kwargs)
        return outputs, prepared

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """Model outputs (class probabilities for a classification head) for raw inputs.

        Args:
            x: inputs in any form the pipeline reads (arrays, a dataset, a
                folder, paths, a single path, texts).
            batch_size: int. Defaults to 32.
            verbose: Keras verbosity.
            **kwargs: data options, or `keras.Model.predict` arguments.

        Returns:
            A float32 numpy array.
        """
        return self._predict_prepared(x, batch_size, verbose, kwargs)[0]

    def predict_labels(self, x, batch_size=None, verbose=0, **kwargs):
        """User-facing predictions decoded by the head: class names (or ids), label lists, tags, values."""
        outputs, prepared = self._predict_prepared(x, batch_size, verbose, kwargs)
        return self.head.decode(outputs, self.class_names, prepared.context)

    def export(self, filepath, format="saved_model", verbose=False, input_signature=None, **kwargs):
        """Exports for serving, preprocessing included (see `finetunekit.core.export.export_model`).

        Args:
            filepath: str. Output folder.
            format: `"saved_model"` or `"tflite"`; Keras' own formats
                (`"tf_saved_model"`, `"onnx"`, `"litert"`, ...) go to `keras.Model.export`.
            verbose: bool. Defaults to `False`.
            input_signature, **kwargs: for Keras' own formats only.

        Returns:
            The path of the exported artifact.

        Example:
        ```python
        ft.export("served/", format="saved_model")
        ```
        """
        from finetunekit.core.export import export_model

        return export_model(self, filepath, format, verbose, input_signature, **kwargs)

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the model as a `.keras` file, atomically (see `fk.saving.save_model`).

        The file is written under a temporary name in the same folder and
        moved over `filepath` only once complete: a crash mid-save leaves the
        previous file whole.

        Args:
            filepath: str. A `.keras` file.
            overwrite: bool. Replace an existing file. With `False`, an
                existing file raises `FileExistsError`. Defaults to `True`.
            zipped: bool or None. As in `keras.Model.save`.
            **kwargs: passed to `keras.Model.save`.

        Example:
        ```python
        ft.save("animals.keras")
        ```
        """
        from finetunekit.core.saving import save_model

        return save_model(self, filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """Saves the weights to a `.weights.h5` file, atomically (see `fk.saving.save_weights`).

        Args:
            filepath: str. A `.weights.h5` file.
            overwrite: bool. Replace an existing file. With `False`, an
                existing file raises `FileExistsError`. Defaults to `True`.
            max_shard_size: float or None. As in `keras.Model.save_weights`
                (sharded files are written by Keras, not atomically).

        Example:
        ```python
        ft.save_weights("animals.weights.h5")
        ```
        """
        from finetunekit.core.saving import save_weights

        return save_weights(self, filepath, overwrite=overwrite, max_shard_size=max_shard_size)
