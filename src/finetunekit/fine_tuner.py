"""`FineTuner`: a pretrained backbone, in-model preprocessing and a head, as one `keras.Model`."""

import keras

from finetunekit.backbones import resolve_backbone
from finetunekit.distribution import (
    adopt_model,
    first_replica_batch,
    logs_for_multi_worker,
    resolve_distribution,
    strategy_scope,
)
from finetunekit.freezing import normalize_unfreeze
from finetunekit.heads.base import Head
from finetunekit.layers.augmentation import build_augmentation
from finetunekit.precision import resolve_policy
from finetunekit.training import (
    CacheOptions,
    add_reliability,
    apply_adapter_unfreeze,
    check_batch_size,
    check_epochs,
    data_args,
    is_tf_dataset,
    merge_histories,
)

_FIT_ONLY = ("validation_split", "on_bad_image", "seed", "x_col", "y_col")


@keras.saving.register_keras_serializable(package="finetunekit")
class FineTuner(keras.Model):
    """Fine-tunes a pretrained backbone with a task head, correctly by default.

    A `FineTuner` is a functional `keras.Model`: raw inputs -> preprocessing
    (resizing and the backbone's own normalisation, inside the model) ->
    training-only augmentation -> backbone -> head. Because preprocessing is
    part of the model, a saved `FineTuner` takes the same raw images at serving
    time as it did in training.

    BatchNorm layers of the backbone always run in inference mode (frozen
    moving statistics), also when the backbone is unfrozen.

    Args:
        backbone: str, keras.Model or path. A `keras.applications` name
            (case-insensitive, e.g. `"resnet50"`, `"EfficientNetV2B0"`), a Keras
            model that maps images to features, or the path of a `.keras` file.
        head: `fk.ClassificationHead`, `fk.RegressionHead` or another
            `fk.heads.Head`.
        weights: `"imagenet"` (Keras' download and cache), `None` (random), or
            the path of a `.weights.h5` / `.keras` file with backbone weights.
            Defaults to `"imagenet"`. Ignored for a model given as backbone,
            unless it is a path.
        input_shape: tuple. `(height, width, channels)` the backbone sees.
            Defaults to the backbone's native size (224x224x3 for ResNet50).
        unfreeze: `0` (backbone frozen, head only), int N (the last N blocks of
            the backbone train) or `"all"`. Defaults to `0`.
        augment: `None`, `"default"`, a dict of ImageDataGenerator-style
            keywords (`rotation_range`, `zoom_range`, `horizontal_flip`, ...) or
            a list of Keras layers. Active in training only.
        mixed_precision: `"auto"` (mixed on a GPU, float32 on CPU), `True`,
            `False`, `"float16"` or `"bfloat16"`. Defaults to `"auto"`.
        preprocessing: `"auto"` (the backbone's own `preprocess_input` mode) or
            one of `"caffe"`, `"tf"`, `"torch"`, `"zero_one"`, `"none"`.
        class_names: list of str or None. Class names, if known up front;
            otherwise learned from string labels or folder names in `fit`.
        architecture: str or None. The `keras.applications` name of a model
            passed as `backbone`, so that `unfreeze=N` knows its blocks. Set
            automatically when the backbone is given by name.
        distribution: None, `"mirrored"`, `"multi_worker"` or a
            `tf.distribute.Strategy`: the model, its optimizer and its
            training run under this strategy (same as building and compiling
            inside `strategy.scope()`). `fit`'s `batch_size` is the global
            batch, split across replicas. A backbone model built outside
            the strategy's scope is rebuilt inside it with the same weights.
            Not saved with the model.
        **kwargs: Standard `keras.Model` arguments (`name`, ...).

    Example:
    ```python
    import finetunekit as fk

    ft = fk.FineTuner(
        backbone="resnet50",
        head=fk.ClassificationHead(num_classes=3, hidden_units=(256,), dropout=0.2),
        augment={"rotation_range": 15, "horizontal_flip": True},
    )
    ft.fit("photos/", validation_split=0.2, epochs=5)
    ft.predict_labels(["photos/cat/1.jpg"])
    ft.save("animals.keras")
    ```
    """

    def __init__(
        self,
        backbone,
        head,
        weights="imagenet",
        input_shape=None,
        unfreeze=0,
        augment=None,
        mixed_precision="auto",
        preprocessing="auto",
        class_names=None,
        architecture=None,
        sequence_length=None,
        preprocessor=None,
        lora_rank=None,
        layer_decay=None,
        distribution=None,
        **kwargs,
    ):
        if not isinstance(head, Head):
            raise ValueError(
                "`head` must be a finetunekit head such as fk.ClassificationHead(num_classes=3) "
                f"or fk.RegressionHead(). Received: {head!r}"
            )
        unfreeze = normalize_unfreeze(unfreeze)
        policy = resolve_policy(mixed_precision)
        text_options = {
            key: value
            for key, value in {
                "sequence_length": sequence_length,
                "preprocessor": preprocessor,
                "lora_rank": lora_rank,
                "layer_decay": layer_decay,
            }.items()
            if value is not None
        }
        strategy = resolve_distribution(distribution)
        # Every variable (backbone, augmentation seeds, head) belongs to the strategy.
        with strategy_scope(strategy):
            adapter = resolve_backbone(
                adopt_model(strategy, backbone),
                weights=weights,
                input_shape=input_shape,
                preprocessing=preprocessing,
                policy=policy,
                architecture=architecture,
                **text_options,
            )
            augmentation_layers = build_augmentation(augment)
            if augmentation_layers and adapter.kind != "image":
                raise ValueError("`augment` applies to image backbones only.")
            inputs, features, padding_mask = adapter.build_graph(augmentation_layers)
            if padding_mask is None:
                outputs = head(features)
            else:
                outputs = head(features, padding_mask=padding_mask)
            super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self.backbone = adapter.model
        self.preprocessor = getattr(adapter, "preprocessor", None)
        self.head = head
        self.adapter = adapter
        self.augmentation_layers = augmentation_layers
        self.policy_name = policy
        self.class_names = list(class_names) if class_names is not None else None
        self.unfreeze = unfreeze
        self.unfrozen_blocks = apply_adapter_unfreeze(adapter, unfreeze)
        self._compile_args = None

    # ------------------------------------------------------------------ config
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "weights": None,
            "input_shape": self.adapter.input_shape,
            "unfreeze": self.unfreeze,
            "augment": [keras.saving.serialize_keras_object(a) for a in self.augmentation_layers]
            or None,
            "mixed_precision": self.policy_name,
            "preprocessing": self.adapter.preprocessing,
            "class_names": self.class_names,
            "architecture": self.adapter.architecture,
            **self.adapter.extra_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "head", "preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("augment"):
            config["augment"] = [
                keras.saving.deserialize_keras_object(a) for a in config["augment"]
            ]
        return cls(**config)

    # --------------------------------------------------------------- freezing
    def set_unfreeze(self, unfreeze):
        """Changes which backbone blocks train (`0`, int N or `"all"`).

        Call `compile` afterwards (Keras fixes the trainable variables at
        compile time); `fine_tune` does both for you.

        Returns:
            The list of unfrozen block names.
        """
        self.unfreeze = normalize_unfreeze(unfreeze)
        self.unfrozen_blocks = apply_adapter_unfreeze(self.adapter, self.unfreeze)
        return self.unfrozen_blocks

    # ---------------------------------------------------------------- compile
    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics="auto",
        learning_rate=None,
        weight_decay=0.01,
        label_smoothing=0.0,
        schedule=None,
        warmup_steps=0,
        decay_steps=None,
        clipnorm=None,
        gradient_accumulation_steps=None,
        use_ema=False,
        **kwargs,
    ):
        """Configures training with fine-tuning defaults; any Keras compile argument works.

        Args:
            optimizer: `"auto"` (AdamW, weight decay not applied to biases and
                normalisation parameters), or any Keras optimizer / name.
            loss: `"auto"` (the head's loss) or any Keras loss.
            metrics: `"auto"` (the head's metrics) or any Keras metrics.
            learning_rate: float or None. For `"auto"`: defaults to 1e-3 with
                a frozen backbone and 1e-4 once any backbone block trains.
            weight_decay: float. AdamW weight decay for `"auto"`. Defaults to 0.01.
            label_smoothing: float in [0, 1). Label smoothing of the `"auto"`
                loss of a classification head (sparse labels are one-hot
                encoded inside the loss; metrics are unchanged). Defaults to 0.
            schedule: None or `"cosine"`: linear warm-up to `learning_rate`
                over `warmup_steps`, then cosine decay over `decay_steps`
                (see `fk.schedules.build_learning_rate`). For `"auto"`.
            warmup_steps, decay_steps: int. Steps of the `"cosine"` schedule.
            clipnorm: float or None. Per-variable gradient norm clipping (`"auto"`).
            gradient_accumulation_steps: int or None. Accumulate gradients
                over this many batches before each update (`"auto"`).
            use_ema: bool. Keep an exponential moving average of the weights,
                written into the model at the end of each epoch (`"auto"`).
            **kwargs: passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, ...).
        """
        # Optimizer variables belong to the model's strategy, if any.
        with strategy_scope(self._distribute_strategy):
            self._compile_args = {
                "optimizer": optimizer if isinstance(optimizer, str) else None,
                "loss": loss,
                "metrics": metrics,
                "learning_rate": learning_rate,
                "weight_decay": weight_decay,
                "label_smoothing": label_smoothing,
                "schedule": schedule,
                "warmup_steps": warmup_steps,
                "decay_steps": decay_steps,
                "clipnorm": clipnorm,
                "gradient_accumulation_steps": gradient_accumulation_steps,
                "use_ema": use_ema,
                **kwargs,
            }
            optimizer_options = {
                key: value
                for key, value in {
                    "clipnorm": clipnorm,
                    "gradient_accumulation_steps": gradient_accumulation_steps,
                    "use_ema": use_ema or None,
                }.items()
                if value is not None
            }
            auto_optimizer = isinstance(optimizer, str) and optimizer == "auto"
            if not auto_optimizer and (optimizer_options or schedule):
                raise ValueError(
                    f"{', '.join(sorted(optimizer_options) + (['schedule'] if schedule else []))} "
                    'configure the optimizer="auto" AdamW; set them on your own optimizer instead. '
                    f"Received: optimizer={optimizer!r}"
                )
            if auto_optimizer:
                if learning_rate is None:
                    learning_rate = 1e-3 if self.unfreeze == 0 else 1e-4
                    if self.adapter.kind == "text" and self.unfreeze != 0:
                        learning_rate = 5e-5
                from finetunekit.schedules import build_learning_rate

                learning_rate = build_learning_rate(
                    learning_rate, schedule, warmup_steps, decay_steps
                )
                multipliers = getattr(self.adapter, "learning_rate_multipliers", dict)()
                if multipliers:
                    from finetunekit.optimizers import LayerDecayAdamW

                    optimizer = LayerDecayAdamW(
                        learning_rate=learning_rate,
                        weight_decay=weight_decay,
                        lr_multipliers=multipliers,
                        **optimizer_options,
                    )
                else:
                    optimizer = keras.optimizers.AdamW(
                        learning_rate=learning_rate, weight_decay=weight_decay, **optimizer_options
                    )
                optimizer.exclude_from_weight_decay(
                    var_names=["bias", "gamma", "beta", "moving_mean", "moving_variance"]
                )
            if isinstance(loss, str) and loss == "auto":
                loss = self.head.default_loss()
                if label_smoothing:
                    from finetunekit.losses import smoothed_loss

                    loss = smoothed_loss(self.head, label_smoothing)
            elif label_smoothing:
                raise ValueError('`label_smoothing` applies to loss="auto"; smooth your own loss.')
            if isinstance(metrics, str) and metrics == "auto":
                metrics = self.head.default_metrics()
            if self.policy_name == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer
            ):
                optimizer = keras.optimizers.get(optimizer)
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def train_step(self, data):
        return logs_for_multi_worker(self._distribute_strategy, super().train_step(data))

    def test_step(self, data):
        return logs_for_multi_worker(self._distribute_strategy, super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras averages one distributed sample batch over replicas to build the
        # optimizer and metrics, which fails under MultiWorkerMirroredStrategy;
        # one replica's batch has the shapes and dtypes the build needs.
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is not None and iterator is not None:
            for _, _, batches in iterator:
                data_batch = first_replica_batch(strategy, next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def compile_from_config(self, config):
        """Restores `compile` from a saved file (optimizer, loss, metrics objects)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    def _ensure_compiled(self):
        if not self.compiled:
            self.compile()

    # ------------------------------------------------------------------- data
    @property
    def data_adapter(self):
        return self.adapter.data_adapter(self.head)

    def _prepare(self, x, y, batch_size, shuffle, require_labels=True, **options):
        check_batch_size(batch_size)
        adapter = self.data_adapter
        (inputs, targets), validation, class_names = adapter.prepare(
            x,
            y,
            class_names=self.class_names,
            batch_size=batch_size or 32,
            shuffle=shuffle,
            require_labels=require_labels,
            **options,
        )
        # Training labels of a tf.data pipeline, for class_weight="balanced".
        self._last_train_targets = getattr(adapter, "train_targets", None)
        return inputs, targets, validation, class_names

    def _adopt_prepared(self, class_names, validation, validation_data, batch_size):
        """Keeps learned class names; returns the validation data to train with.

        `validation` is the split made by `validation_split` (or None);
        `validation_data` what the user passed.
        """
        if class_names is not None:
            self.class_names = list(class_names)
        if validation is not None:
            if validation_data is not None:
                raise ValueError("Pass either validation_data or validation_split, not both.")
            return validation[0] if validation[1] is None else validation
        return self._prepare_validation(validation_data, batch_size)

    def _prepare_validation(self, validation_data, batch_size):
        if validation_data is None or is_tf_dataset(validation_data):
            return validation_data
        if isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
            x, y = validation_data[0], validation_data[1]
        else:
            x, y = validation_data, None
        inputs, targets, _, _ = self._prepare(x, y, batch_size, shuffle=False)
        return inputs if targets is None else (inputs, targets)

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        validation_data=None,
        validation_split=0.0,
        shuffle=True,
        on_bad_image="error",
        seed=None,
        x_col=None,
        y_col=None,
        checkpoint_dir=None,
        on_nan="raise",
        cache_features="auto",
        cache_memory_budget=None,
        cache_augmented_copies=0,
        **kwargs,
    ):
        """Trains on arrays, a `tf.data.Dataset`, a class folder, paths or a DataFrame.

        Args:
            x: images as a `(n, h, w, c)` array, a `tf.data.Dataset` of
                `(images, labels)`, a folder with one sub-folder per class, a
                list of image paths or a DataFrame of paths and labels; texts
                as a list of strings, a DataFrame, a CSV/JSONL file or a
                folder; or a TFDS split (`"tfds:name[:split]"` or
                `fk.data.TFDS(...)`).
            y: labels (ints or strings), or the label column name for a
                DataFrame. Not used with a folder, a dataset or TFDS.
            batch_size: int. Defaults to 32.
            epochs: int > 0.
            validation_data: `(x, y)`, a folder, or a dataset.
            validation_split: float. Fraction held out (stratified) for
                validation.
            shuffle: bool. Shuffle training data each epoch.
            on_bad_image: `"error"` (default) or `"skip"` for unreadable files.
            padding: text only. `"dynamic"` (default: random batches, each
                padded to its own longest text), `"bucket"` (batches of texts
                of similar length, as fastai's sortish sampling: less
                padding, less random batches) or `"fixed"` (always `sequence_length`).
                Evaluation and prediction keep the order of the data and pad
                each batch to its longest text.
            seed: int or None. Seed of the validation split and shuffling.
            x_col, y_col: str. DataFrame column names (auto-detected otherwise).
            checkpoint_dir: str or None. Keep resumable training state in
                `checkpoint_dir/backup` (`keras.callbacks.BackupAndRestore`:
                rerunning the same `fit` after a crash resumes after the last
                finished epoch) and the best model (by `val_loss`, or `loss`
                without validation data) in `checkpoint_dir/best.keras`,
                written atomically. Defaults to None.
            on_nan: `"raise"` (default: raise `fk.TrainingDivergedError` when
                the loss becomes NaN/inf, naming likely causes), `"warn"`
                (stop training and warn) or None (no check).
            cache_features: `"auto"`, True or False. With a frozen backbone
                (`unfreeze=0`) and no augmentation, compute the backbone's
                (pooled) features once and train the head on them every epoch
                (see `finetunekit.caching`). `"auto"` caches when possible for
                arrays and finite datasets. Defaults to `"auto"`.
            cache_memory_budget: int or None. Bytes of cached features kept in
                memory; more go to a memory-mapped file in a temporary folder.
                Defaults to 2 GiB.
            cache_augmented_copies: int. With augmentation, cache this many
                augmented passes (epoch `e` trains on copy `e % K`). Defaults
                to 0 (no caching with augmentation).
            **kwargs: passed to `keras.Model.fit` (`callbacks`, `class_weight`,
                `verbose`, `initial_epoch`, ...). `class_weight="balanced"`
                weights classes inversely to their frequency in the training
                labels (scikit-learn's `compute_class_weight`).

        Returns:
            A `keras.callbacks.History`.
        """
        text_options = {k: kwargs.pop(k) for k in ("padding",) if k in kwargs}
        if checkpoint_dir is not None and cache_features == "auto":
            cache_features = False  # a checkpoint holds the whole FineTuner, not a cached head
        cache = CacheOptions(
            cache_features, cache_memory_budget, cache_augmented_copies, batch_size, shuffle
        )
        if is_tf_dataset(x) and y is None and not validation_split and self.adapter.kind != "text":
            self._ensure_compiled()
            check_epochs(epochs, kwargs.get("initial_epoch", 0))
            add_reliability(self, kwargs, None, on_nan, checkpoint_dir, validation_data is not None)
            history = cache.fit(self, x, None, validation_data, epochs, kwargs)
            if history is not None:
                return history
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself
            return super().fit(x, epochs=epochs, validation_data=validation_data, **kwargs)
        check_epochs(epochs, kwargs.get("initial_epoch", 0))
        inputs, targets, validation, class_names = self._prepare(
            x,
            y,
            batch_size,
            shuffle,
            validation_split=validation_split,
            on_bad_image=on_bad_image,
            seed=seed,
            x_col=x_col,
            y_col=y_col,
            **text_options,
        )
        validation_data = self._adopt_prepared(class_names, validation, validation_data, batch_size)
        self._ensure_compiled()
        labels = targets if targets is not None else self._last_train_targets
        add_reliability(self, kwargs, labels, on_nan, checkpoint_dir, validation_data is not None)
        history = cache.fit(self, inputs, targets, validation_data, epochs, kwargs)
        if history is not None:
            return history
        if targets is None:  # a tf.data pipeline, shuffled when it was built
            return super().fit(
                inputs, epochs=epochs, validation_data=validation_data, shuffle=False, **kwargs
            )
        return super().fit(
            inputs,
            targets,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=validation_data,
            shuffle=shuffle,
            **kwargs,
        )

    def fine_tune(
        self,
        x=None,
        y=None,
        epochs=6,
        freeze_epochs=2,
        unfreeze=2,
        learning_rate=1e-3,
        fine_tune_learning_rate=None,
        validation_data=None,
        validation_split=0.0,
        batch_size=None,
        gradual=False,
        every=1,
        **kwargs,
    ):
        """Two-stage fine-tuning: train the head, then unfreeze the top blocks at a lower LR.

        Args:
            x, y: training data, as for `fit`.
            epochs: int. Total epochs of both stages. Defaults to 6.
            freeze_epochs: int. Epochs of head-only training first. Defaults to 2.
            unfreeze: int or `"all"`. Blocks unfrozen in the second stage.
                Defaults to 2.
            learning_rate: float. Learning rate of the head-only stage.
            fine_tune_learning_rate: float or None. Learning rate of the second
                stage. Defaults to `learning_rate / 10`.
            validation_data, validation_split, batch_size: as for `fit`.
            gradual: bool. Unfreeze gradually in the second stage (ULMFiT):
                one block first, one more every `every` epochs, up to
                `unfreeze` blocks (`fk.schedules.GradualUnfreezing`).
            every: int. Epochs per gradual-unfreezing stage. Defaults to 1.
            **kwargs: passed to `fit` (`callbacks`, `seed`, ...).

        Returns:
            A `keras.callbacks.History` covering both stages.
        """
        check_epochs(epochs)
        if not 0 <= freeze_epochs <= epochs:
            raise ValueError(
                f"`freeze_epochs` must be between 0 and epochs={epochs}. "
                f"Received: freeze_epochs={freeze_epochs}"
            )
        fit_options = {k: kwargs.pop(k) for k in _FIT_ONLY if k in kwargs}
        on_nan = kwargs.pop("on_nan", "raise")
        shuffle = kwargs.pop("shuffle", True)
        inputs, targets, validation, class_names = self._prepare(
            x, y, batch_size, shuffle, validation_split=validation_split, **fit_options
        )
        # A tf.data pipeline was shuffled when it was built; arrays are shuffled by Keras.
        kwargs["shuffle"] = shuffle if targets is not None else False
        labels = targets if targets is not None else self._last_train_targets
        add_reliability(self, kwargs, labels, on_nan, None, False)
        validation_data = self._adopt_prepared(class_names, validation, validation_data, batch_size)
        compile_args = dict(self._compile_args or {})
        for key in ("learning_rate", "optimizer"):
            compile_args.pop(key, None)
        histories = []
        if freeze_epochs:
            self.set_unfreeze(0)
            self.compile(learning_rate=learning_rate, **compile_args)
            histories.append(
                super().fit(
                    *data_args(inputs, targets, batch_size),
                    epochs=freeze_epochs,
                    validation_data=validation_data,
                    **kwargs,
                )
            )
        if epochs > freeze_epochs:
            stage_kwargs = dict(kwargs)
            if gradual:
                from finetunekit.schedules import GradualUnfreezing

                gradual_callback = GradualUnfreezing(
                    every,
                    max_blocks=None if unfreeze == "all" else unfreeze,
                    start_epoch=freeze_epochs,
                    initial_blocks=1,
                )
                stage_kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [gradual_callback]
            first = (1 if unfreeze == "all" else min(1, unfreeze)) if gradual else unfreeze
            self.set_unfreeze(first)
            self.compile(
                learning_rate=fine_tune_learning_rate or learning_rate / 10, **compile_args
            )
            histories.append(
                super().fit(
                    *data_args(inputs, targets, batch_size),
                    epochs=epochs,
                    initial_epoch=freeze_epochs,
                    validation_data=validation_data,
                    **stage_kwargs,
                )
            )
        return merge_histories(histories)

    def find_lr(
        self, x=None, y=None, start_lr=1e-7, end_lr=1.0, num_steps=100, batch_size=None, **kwargs
    ):
        """Learning-rate range test: trains `num_steps` steps at exponentially growing LRs.

        Weights (all model variables) are restored exactly afterwards; a copy of
        the compiled optimizer takes the steps, so the optimizer state is
        untouched. Compile first to test another optimizer or loss.

        Args:
            x, y: training data, in any form `fit` accepts.
            start_lr, end_lr: float. First and last learning rate.
            num_steps: int. Steps (the data repeat when needed). Defaults to 100.
            batch_size: int. Defaults to 32.
            **kwargs: `seed`, `smoothing`, `diverge_factor`, and data options
                (`on_bad_image`, `x_col`, `y_col`).

        Returns:
            An `LRFinderResult` with `learning_rates`, `losses`, `suggestion`
            and `plot(path)`.

        Example:
        ```python
        result = ft.find_lr(x, y)
        ft.compile(learning_rate=result.suggestion)
        ```
        """
        from finetunekit.lr_finder import run_lr_range_test

        self._ensure_compiled()
        options = {k: kwargs.pop(k) for k in ("seed", "smoothing", "diverge_factor") if k in kwargs}
        inputs, targets, _, class_names = self._prepare(
            x, y, batch_size, shuffle=True, seed=options.get("seed"), **kwargs
        )
        if class_names is not None and self.class_names is None:
            self.class_names = list(class_names)
        return run_lr_range_test(
            self,
            inputs,
            targets,
            batch_size=batch_size or 32,
            start_lr=start_lr,
            end_lr=end_lr,
            num_steps=num_steps,
            **options,
        )

    # ------------------------------------------------------- evaluate/predict
    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Evaluates on data in any form `fit` accepts. Returns Keras' loss and metrics.

        With `report=True`, returns a `fk.Report` instead: scikit-learn
        accuracy, precision/recall/F1 per class and averaged, and the
        confusion matrix (MAE/RMSE/R2 for regression). See `fk.report`.
        """
        if kwargs.pop("report", False):
            from finetunekit.reports import report

            options = {
                k: kwargs.pop(k)
                for k in ("on_bad_image", "x_col", "y_col", "padding")
                if k in kwargs
            }
            return report(self, x, y, batch_size=batch_size, **options)
        text = self.adapter.kind == "text"
        if (is_tf_dataset(x) and not text) or kwargs.get("_use_cached_eval_dataset"):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        self._ensure_compiled()
        options = {
            k: kwargs.pop(k) for k in ("on_bad_image", "x_col", "y_col", "padding") if k in kwargs
        }
        inputs, targets, _, _ = self._prepare(x, y, batch_size, shuffle=False, **options)
        if targets is None:
            return super().evaluate(inputs, batch_size=batch_size, **kwargs)
        return super().evaluate(inputs, targets, batch_size=batch_size, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """Returns model outputs (class probabilities for a classification head).

        Args:
            x: images as an array, a dataset, a folder, a list of paths, or a
                single path.
            batch_size: int. Defaults to 32.
            verbose: Keras verbosity.
            **kwargs: passed to `keras.Model.predict`.

        Returns:
            A numpy array, float32.
        """
        if is_tf_dataset(x) and self.adapter.kind != "text":
            return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)
        options = {k: kwargs.pop(k) for k in ("on_bad_image", "x_col", "padding") if k in kwargs}
        inputs, _, _, _ = self._prepare(
            x, None, batch_size, shuffle=False, require_labels=False, **options
        )
        return super().predict(inputs, batch_size=batch_size, verbose=verbose, **kwargs)

    def predict_labels(self, x, batch_size=None, verbose=0, **kwargs):
        """Predicts user-facing labels: class names (or ids when names are unknown).

        A multi-label head returns a list of label lists (per-class
        thresholds); a regression head returns its values.
        """
        if getattr(self.head, "token_level", False):  # one tag per word
            outputs = self.predict(x, batch_size=batch_size, verbose=verbose, **kwargs)
            return self.data_adapter.decode_words(x, outputs, self.class_names)
        outputs = self.predict(x, batch_size=batch_size, verbose=verbose, **kwargs)
        return self.head.decode(outputs, self.class_names)

    def predict_entities(self, x, batch_size=None, **kwargs):
        """Entity spans of a token-classification (NER) model, one list per text.

        Args:
            x: list of word lists (or of strings, split on whitespace).

        Returns:
            Per text, a list of `{"type", "start", "end", "text"}` (word indices).
        """
        from finetunekit.data.text import _as_words
        from finetunekit.heads.token_classification import entity_spans

        tags = self.predict_labels(x, batch_size=batch_size, **kwargs)
        words = [_as_words(s) for s in x]
        return [entity_spans(w, t) for w, t in zip(words, tags, strict=True)]

    def evaluate_entities(self, x, y, batch_size=None, **kwargs):
        """Entity-level precision/recall/F1 (seqeval) of a token-classification model."""
        from finetunekit.heads.token_classification import entity_scores

        return entity_scores(y, self.predict_labels(x, batch_size=batch_size, **kwargs))

    def export(self, filepath, format="saved_model", verbose=False, input_signature=None, **kwargs):
        """Exports for serving, preprocessing included (see `finetunekit.export`).

        Args:
            filepath: str. Output folder.
            format: `"saved_model"` (float32 images of any size, values
                0-255, in; outputs out) or `"tflite"` (`filepath/model.tflite`
                at the model's input size). Other Keras formats
                (`"tf_saved_model"`, `"onnx"`, `"litert"`, ...) go to
                `keras.Model.export`.
            verbose: bool. Defaults to `False`.
            input_signature, **kwargs: for Keras' own formats.

        Returns:
            The path of the exported artifact.

        Example:
        ```python
        ft.export("served/", format="saved_model")
        ```
        """
        from finetunekit.export import EXPORT_FORMATS, export_model

        if format not in EXPORT_FORMATS or input_signature is not None or kwargs:
            if format in ("tf_saved_model", "onnx", "openvino", "litert", "torch"):
                return super().export(
                    filepath,
                    format=format,
                    verbose=verbose,
                    input_signature=input_signature,
                    **kwargs,
                )
        return export_model(self, filepath, format=format, verbose=verbose)

    # ----------------------------------------------------------------- saving
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
        from finetunekit.saving import save_model

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
        from finetunekit.saving import save_weights

        return save_weights(self, filepath, overwrite=overwrite, max_shard_size=max_shard_size)
