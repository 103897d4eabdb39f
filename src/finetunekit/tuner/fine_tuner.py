"""`FineTuner`: a pretrained backbone, in-model preprocessing and a head, as one `keras.Model`.

`FineTuner` only orchestrates: the backbone kind (`finetunekit.backbones`)
builds the inputs and named outputs, the head (`finetunekit.heads`) owns the
task, the data pipeline turns user data into batches, and one stage runner
(`finetunekit.training`) trains `fit`, both stages of `fine_tune` and the
feature-cached path.
"""

import functools

import keras

from finetunekit.core._keras_compat import (
    SymbolicBuildFromOneReplica,
    distribute_strategy,
    is_validation_inside_fit,
)
from finetunekit.core.augmentation import build_augmentation
from finetunekit.core.console import progress_verbosity
from finetunekit.core.data.pipeline import check_class_names
from finetunekit.core.distribution import (
    adopt_model,
    logs_for_multi_worker,
    resolve_distribution,
    strategy_scope,
)
from finetunekit.core.freezing import normalize_unfreeze
from finetunekit.core.head import Head
from finetunekit.core.kind import resolve_backbone
from finetunekit.core.precision import resolve_policy
from finetunekit.training import (
    check_batch_size,
    fine_tune_stages,
    merge_histories,
    plan_fit,
    pop_data_options,
    run_stage,
)
from finetunekit.training.optimizer import resolve_compile
from finetunekit.training.plan import run_fine_tune_stage, training_data


@keras.saving.register_keras_serializable(package="finetunekit")
class FineTuner(SymbolicBuildFromOneReplica, keras.Model):
    """Fine-tunes a pretrained backbone with a task head, correctly by default.

    A `FineTuner` is a functional `keras.Model`: raw inputs -> preprocessing
    (inside the model for images; the tokenizer travels with the model for
    text) -> training-only augmentation -> backbone -> head. A saved
    `FineTuner` takes the same raw inputs at serving time as in training.
    BatchNorm layers of the backbone always run in inference mode.

    Args:
        backbone: a `keras.applications` name (`"resnet50"`), a keras-hub text
            preset, `"hf://"` handle or preset folder, a Keras model, a
            keras-hub Backbone or the path of a `.keras` file. Every registered
            backbone kind (`fk.backbones.backbone_kinds()`) is asked in turn.
        head: a `fk.heads.Head`: `fk.ClassificationHead`, `fk.RegressionHead`,
            `fk.TokenClassificationHead` or your own.
        weights: `"imagenet"`/`"pretrained"` (the published weights), `None`
            (random) or the path of a `.weights.h5` / `.keras` file.
        input_shape: tuple. `(height, width, channels)` an image backbone
            sees. Defaults to its native size.
        unfreeze: `0` (backbone frozen), int N (the last N blocks train) or
            `"all"`. Defaults to `0`.
        augment: `None`, `"default"`, a dict of ImageDataGenerator-style
            keywords or a list of Keras layers. Active in training only. For
            text backbones: `{"random_deletion": p, "random_swap": p,
            "token_mask": p}` (applied to the training data in the pipeline).
        mixed_precision: `"auto"` (mixed on a GPU, float32 on CPU), `True`,
            `False`, `"float16"` or `"bfloat16"`.
        preprocessing: `"auto"` (the backbone's own), an image normalisation
            mode (`"caffe"`, `"tf"`, `"torch"`, `"zero_one"`, `"none"`) or, for
            text, `"clean"` (strip HTML, normalise unicode and whitespace).
        class_names: list of str or None. Otherwise learned from the data.
        architecture: str or None. The `keras.applications` name of a model
            passed as `backbone`, so that `unfreeze=N` knows its blocks.
        sequence_length, preprocessor, lora_rank: text-encoder options (see
            `fk.backbones.TextEncoderBackbone`).
        layer_decay: float in (0, 1] or None. Layer-wise learning-rate decay
            (timm's convention: the top block trains at `layer_decay` times
            the head's rate, each block below at `layer_decay` times the one
            above).
        quantize: None or `"int8"`: keep the frozen base weights of a causal
            language model in int8 under LoRA (`fk.backbones.CausalLMBackbone`).
        distribution: None, `"mirrored"`, `"multi_worker"` or a
            `tf.distribute.Strategy`. Not saved with the model.
        **kwargs: Standard `keras.Model` arguments (`name`, ...).

    Example:
    ```python
    ft = fk.FineTuner(backbone="resnet50", head=fk.ClassificationHead(num_classes=3),
                      augment={"rotation_range": 15, "horizontal_flip": True})
    ft.fit("photos/train/", epochs=5)
    ft.predict_labels(["photos/test/cat/1.jpg"])
    ft.save("animals.keras")
    ```
    """

    def __init__(
        self, backbone, head, weights="imagenet", input_shape=None, unfreeze=0, augment=None,
        mixed_precision="auto", preprocessing="auto", class_names=None, architecture=None,
        sequence_length=None, preprocessor=None, lora_rank=None, layer_decay=None,
        distribution=None, quantize=None, **kwargs,
    ):
        if not isinstance(head, Head):
            raise ValueError(
                "`head` must be a finetunekit head such as fk.ClassificationHead(num_classes=3) "
                f"or fk.RegressionHead(). Received: {head!r}"
            )
        unfreeze = normalize_unfreeze(unfreeze)
        class_names = check_class_names(class_names)
        policy = resolve_policy(mixed_precision)
        given = dict(sequence_length=sequence_length, preprocessor=preprocessor,
                     lora_rank=lora_rank, layer_decay=layer_decay, quantize=quantize)
        options = {key: value for key, value in given.items() if value is not None}
        strategy = resolve_distribution(distribution)
        # Every variable (backbone, augmentation seeds, head) belongs to the strategy.
        with strategy_scope(strategy):
            kind = resolve_backbone(
                adopt_model(strategy, backbone), weights=weights, input_shape=input_shape,
                preprocessing=preprocessing, policy=policy, architecture=architecture, **options,
            )
            kind = head.adapt_backbone(kind)
            augmentation_layers = build_augmentation(augment)
            in_model = augmentation_layers if head.augment_in_model else ()
            inputs, outputs = kind.build(head.needs, in_model)
            predictions = head({name: outputs[name] for name in head.needs if name in outputs})
            super().__init__(inputs=inputs, outputs=predictions, **kwargs)
        self.backbone_kind = kind
        self.backbone = kind.model
        self.preprocessor = kind.preprocessor
        self.backbone_outputs = outputs
        self.head = head
        self.augmentation_layers = augmentation_layers
        self.policy_name = policy
        self.class_names = class_names
        self.unfreeze = unfreeze
        self.unfrozen_blocks = kind.apply_unfreeze(unfreeze)
        object.__setattr__(self, "_compile_args", None)
        object.__setattr__(self, "compile_arguments", {})

    # ------------------------------------------------------------------ config
    def get_config(self):
        augment = [keras.saving.serialize_keras_object(a) for a in self.augmentation_layers]
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "weights": None,
            "input_shape": self.backbone_kind.input_shape,
            "unfreeze": self.unfreeze,
            "augment": augment or None,
            "mixed_precision": self.policy_name,
            "preprocessing": self.backbone_kind.preprocessing,
            "class_names": self.class_names,
            "architecture": self.backbone_kind.architecture,
            **self.backbone_kind.config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "head", "preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("augment"):
            config["augment"] = [keras.saving.deserialize_keras_object(a) for a in config["augment"]]
        return cls(**config)

    def __getattr__(self, name):
        # Task methods of the head (`predict_entities`, ...): ft.NAME(...) -> head.NAME(ft, ...).
        head = self.__dict__.get("head")
        if head is not None and name in getattr(head, "task_methods", ()):
            return functools.partial(getattr(head, name), self)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self):
        head = self.__dict__.get("head")
        return sorted(set(super().__dir__()) | set(getattr(head, "task_methods", ())))

    # --------------------------------------------------------------- freezing
    def set_unfreeze(self, unfreeze):
        """Changes which backbone blocks train (`0`, int N or `"all"`); returns their names.

        Call `compile` afterwards (Keras fixes the trainable variables at
        compile time); `fine_tune` does both for you.
        """
        self.unfreeze = normalize_unfreeze(unfreeze)
        self.unfrozen_blocks = self.backbone_kind.apply_unfreeze(self.unfreeze)
        return self.unfrozen_blocks

    # ---------------------------------------------------------------- compile
    def compile(
        self, optimizer="auto", loss="auto", metrics="auto", learning_rate=None,
        weight_decay=0.01, label_smoothing=0.0, schedule=None, warmup_steps=0, decay_steps=None,
        clipnorm=None, gradient_accumulation_steps=None, use_ema=False, **kwargs,
    ):
        """Configures training with fine-tuning defaults; any Keras compile argument works.

        Args:
            optimizer: `"auto"` (AdamW; no weight decay on weights of rank <= 1,
                layer-wise rates with `layer_decay`) or any Keras optimizer.
            loss, metrics: `"auto"` (the head's) or any Keras loss / metrics.
            learning_rate: float or None. For `"auto"`: the backbone kind's
                default (1e-3 frozen; 1e-4 images / 5e-5 text when unfrozen).
            weight_decay: float. AdamW weight decay. Defaults to 0.01.
            label_smoothing: float in [0, 1). Smoothing of the head's `"auto"` loss.
            schedule, warmup_steps, decay_steps: `"cosine"` warm-up + decay
                (`fk.schedules.build_learning_rate`).
            clipnorm, gradient_accumulation_steps, use_ema: AdamW options (`"auto"`).
            **kwargs: passed to `keras.Model.compile` (`jit_compile`, ...).
        """
        options = dict(
            learning_rate=learning_rate, weight_decay=weight_decay,
            label_smoothing=label_smoothing, schedule=schedule, warmup_steps=warmup_steps,
            decay_steps=decay_steps, clipnorm=clipnorm, use_ema=use_ema,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )
        # Plain attributes: Keras would track metric objects in them as the model's metrics.
        object.__setattr__(self, "_compile_args", dict(
            options, optimizer=optimizer if isinstance(optimizer, str) else None, loss=loss,
            metrics=metrics, **kwargs,
        ))
        # Optimizer variables belong to the model's strategy, if any.
        with strategy_scope(distribute_strategy(self)):
            optimizer, loss, metrics = resolve_compile(self, optimizer, loss, metrics, **options)
            if getattr(self.head, "weighted_metrics", False) and "weighted_metrics" not in kwargs:
                # Per-token sample weights are the head's loss mask: its metrics must see them.
                kwargs["weighted_metrics"], metrics = metrics, None
            object.__setattr__(self, "compile_arguments", dict(kwargs, metrics=metrics))
            super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def train_step(self, data):
        return logs_for_multi_worker(distribute_strategy(self), super().train_step(data))

    def test_step(self, data):
        return logs_for_multi_worker(distribute_strategy(self), super().test_step(data))

    def compile_from_config(self, config):
        """Restores `compile` from a saved file (optimizer, loss, metrics objects)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    def _ensure_compiled(self):
        if not self.compiled:
            self.compile()

    # ------------------------------------------------------------------- data
    def prepare(self, x, y=None, batch_size=None, **options):
        """Raw data -> model batches: the one way from user data to `(x, y, sample_weight)`.

        Runs the backbone kind's data pipeline for the head: reading (arrays,
        folders, files, DataFrames, datasets, TFDS), target encoding, the
        validation split, preprocessing that happens outside the model, and
        batching. `fit`, `evaluate`, `predict`, `fk.report` and the LR finder
        all go through it.

        Args:
            x: inputs in any form the backbone's pipeline reads.
            y: targets, or None (prediction, or data that carries its labels).
            batch_size: int. Defaults to 32.
            **options: pipeline options: `validation_split`, `seed`,
                `shuffle`, `sample_weight`, `require_labels`, `x_col`/`y_col`,
                `padding`, ...

        Returns:
            A `finetunekit.core.data.pipeline.Prepared`: `train` (and
            `validation`) splits whose `x` Keras can fit on, plus what the
            pipeline learned (class names, input sizes).

        Example:
        ```python
        prepared = ft.prepare(texts, labels, batch_size=16, validation_split=0.2, seed=0)
        x, y, sample_weight = next(iter(prepared.train.x))
        ```
        """
        check_batch_size(batch_size)
        pipeline = self.backbone_kind.data_pipeline(self.head, self.augmentation_layers)
        return pipeline.prepare(
            x, y, class_names=self.class_names, batch_size=batch_size or 32, **options
        )

    # -------------------------------------------------------------------- fit
    def fit(
        self, x=None, y=None, batch_size=None, epochs=1, validation_data=None,
        validation_split=0.0, shuffle=True, **kwargs,
    ):
        """Trains on arrays, a `tf.data.Dataset`, a class folder, paths, a DataFrame, files or TFDS.

        Args:
            x: inputs in any form the backbone's pipeline reads (image arrays,
                folders, paths, DataFrames; texts, CSV/JSONL files; a
                `tf.data.Dataset` of `(x, y[, sample_weight])`; `"tfds:name:split"`).
            y: targets, or the label column of a DataFrame. Not used with a
                folder, a dataset or TFDS.
            batch_size: int. Defaults to 32.
            epochs: int > 0.
            validation_data: `(x, y[, sample_weight])`, a folder or a dataset.
            validation_split: float. Fraction held out (stratified) for validation.
            shuffle: bool. Shuffle training data each epoch.
            **kwargs: finetunekit options — `sample_weight` (one weight per
                example, kept through every pipeline), `seed`, `on_bad_image`
                (`"error"`/`"skip"`), `x_col`/`y_col` (DataFrame columns),
                `padding` (text: `"dynamic"`, `"bucket"`, `"fixed"`, or a list of
                bucket lengths),
                `checkpoint_dir` (resumable state and `best.keras`), `on_nan`
                (`"raise"`, `"warn"`, None), `cache_features` (`"auto"`, True,
                False), `cache_memory_budget` (bytes), `cache_augmented_copies`,
                `early_stopping` (patience N: Keras' `EarlyStopping` on
                `val_loss`, best weights restored; needs validation data)
                — and any `keras.Model.fit` argument (`callbacks`, `verbose`,
                `class_weight`: a dict by class id or name, or `"balanced"`).

        Returns:
            A `keras.callbacks.History`.
        """
        plan = plan_fit(batch_size=batch_size, shuffle=shuffle, **kwargs)
        prepared, validation = training_data(self, x, y, validation_data, validation_split, plan)
        self._ensure_compiled()
        return run_stage(self, prepared, validation, epochs, plan.options, plan.keras)

    def fine_tune(
        self, x=None, y=None, epochs=6, freeze_epochs=2, unfreeze=2, learning_rate=1e-3,
        fine_tune_learning_rate=None, gradual=False, every=1, validation_data=None,
        validation_split=0.0, batch_size=None, shuffle=True, **kwargs,
    ):
        """Two-stage fine-tuning: train the head, then the top blocks too, at a lower rate.

        Args:
            x, y, validation_data, validation_split, batch_size, shuffle: as for `fit`.
            epochs: int. Total epochs of both stages. Defaults to 6.
            freeze_epochs: int. Head-only epochs first (feature-cached when
                possible). Defaults to 2.
            unfreeze: int or `"all"`. Blocks trained in the second stage. Defaults to 2.
            learning_rate: float. Rate of the head-only stage. Defaults to 1e-3.
            fine_tune_learning_rate: float or None. Rate of the second stage.
                Defaults to `learning_rate / 10`.
            gradual: bool. Unfreeze one more block every `every` epochs (ULMFiT).
            every: int. Epochs per gradual-unfreezing step. Defaults to 1.
            **kwargs: every other `fit` argument (`checkpoint_dir`: each stage
                resumes after a crash, a finished head stage is not repeated;
                `cache_features`, `padding`, `on_bad_image`, `callbacks`, ...).

        Returns:
            A `keras.callbacks.History` covering both stages.
        """
        plan = plan_fit(batch_size=batch_size, shuffle=shuffle, **kwargs)
        stages = fine_tune_stages(
            epochs, freeze_epochs, unfreeze, learning_rate, fine_tune_learning_rate, gradual,
            every, plan.options.checkpoint_dir,
        )
        # Read the data for the model as its last stage trains it: a pipeline that refuses
        # data when nothing would train (a Seq2SeqHead has no weights) must see those blocks.
        previous = self.unfreeze
        self.set_unfreeze(stages[-1].unfreeze)
        try:
            prepared, validation = training_data(
                self, x, y, validation_data, validation_split, plan
            )
        finally:
            self.set_unfreeze(previous)
        compile_args = dict(self._compile_args or {})
        for key in ("learning_rate", "optimizer"):
            compile_args.pop(key, None)
        histories = [
            run_fine_tune_stage(self, stage, prepared, validation, plan, compile_args)
            for stage in stages
        ]
        return merge_histories(histories)

    def find_lr(self, x=None, y=None, start_lr=1e-7, end_lr=1.0, num_steps=100, batch_size=None, **kwargs):
        """Learning-rate range test: `num_steps` steps at exponentially growing rates.

        Weights and the compiled optimizer's state are restored afterwards.

        Args:
            x, y: training data, in any form `fit` accepts.
            start_lr, end_lr: float. First and last learning rate.
            num_steps: int. Steps (the data repeat when needed). Defaults to 100.
            batch_size: int. Defaults to 32.
            **kwargs: `seed`, `smoothing`, `diverge_factor`, and data options.

        Returns:
            An `LRFinderResult` with `learning_rates`, `losses`, `suggestion`
            and `plot(path)`.

        Example:
        ```python
        ft.compile(learning_rate=ft.find_lr(x, y).suggestion)
        ```
        """
        from finetunekit.training.lr_finder import find_lr

        self._ensure_compiled()
        return find_lr(self, x, y, start_lr, end_lr, num_steps, batch_size, **kwargs)

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
        prepared = self.prepare(x, y, batch_size, sample_weight=sample_weight, **data)
        kwargs["verbose"] = progress_verbosity(kwargs.get("verbose", "auto"))
        return super().evaluate(**prepared.train.fit_arguments(batch_size), **kwargs)

    def _predict_prepared(self, x, batch_size, verbose, kwargs):
        prepared = self.prepare(x, None, batch_size, require_labels=False, **pop_data_options(kwargs))
        train = prepared.train
        batch_size = None if train.is_dataset else batch_size
        verbose = progress_verbosity(verbose)
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
