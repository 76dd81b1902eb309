"""Shared machinery of the recipes: setup, data, models, optimisers, callbacks, results.

Every recipe is `main(argv) -> run(config)`; `run` is a plain function that
tests call directly. This module holds what `train.py` and `distill.py`
share, so neither repeats the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np


class ConfigError(ValueError):
    """A run was configured wrongly; the message says how to fix it."""


def user_errors():
    """Errors `main` reports as one `error: ...` line (their messages say the fix)."""
    from keras_distill.callbacks.guards import NonFiniteLossError
    from keras_distill.data import DataError, DataNotFoundError
    from keras_distill.methods import OptionError

    return (ConfigError, DataError, DataNotFoundError, NonFiniteLossError, OptionError)


# ------------------------------------------------------------------- setup
def prepare_model_dir(model_dir, overwrite=False):
    """Creates `model_dir` and proves it is writable before any training.

    Raises:
        ConfigError: when the folder cannot be created or written (read-only
            file system, permissions, disk full).
    """
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, ".write_test")
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
        os.remove(probe)
    except OSError as error:
        raise ConfigError(
            f"--model_dir {model_dir!r} is not writable ({error.strerror or error}). "
            "Pick a folder you can write to with free space, e.g. --model_dir=/tmp/run.") \
            from error
    return model_dir


def setup(config):
    """Seeds, precision policy and the distribution strategy (before any model).

    Under `--strategy=multi_worker` every worker runs the same recipe; a
    non-chief worker's `config.model_dir` is moved to a private
    `<model_dir>/workers/worker-<i>` so only the chief writes the run's files.
    """
    from keras_distill.distribute import get_strategy, is_chief, worker_dir

    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    else:
        keras.mixed_precision.set_global_policy("float32")
    strategy = get_strategy(config.strategy)
    if not is_chief(strategy):
        config.model_dir = prepare_model_dir(worker_dir(config.model_dir, strategy))
    return strategy


def write_json(path, payload):
    """Writes JSON atomically (a temporary file renamed over the target)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=_json_default)
        temporary = handle.name
    os.replace(temporary, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def validate(config, roles=("teacher", "student")):
    """Checks names and choices before any data is read or model trained."""
    from keras_distill import models

    for role in roles:
        name = getattr(config, role)
        if name is None or name.endswith(".keras") or os.path.sep in name \
                or name.startswith("keras.applications."):
            continue
        try:
            models.spec(name)
        except (ValueError, KeyError) as error:
            raise ConfigError(f"--{role}: {error}") from error
    if config.lr_schedule not in ("step", "cosine", "constant"):
        raise ConfigError(f"--lr_schedule must be step, cosine or constant, got "
                          f"{config.lr_schedule!r}.")
    if config.optimizer not in ("sgd", "adam"):
        raise ConfigError(f"--optimizer must be sgd or adam, got {config.optimizer!r}.")
    if not 0.0 <= config.label_noise < 1.0:
        raise ConfigError(f"--label_noise must be in [0, 1), got {config.label_noise}.")
    if config.imbalance_ratio < 1.0:
        raise ConfigError(f"--imbalance_ratio must be >= 1, got {config.imbalance_ratio}.")
    if not config.epochs or config.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {config.epochs}.")
    from keras_distill.data import get_augmentation

    try:
        get_augmentation(config.augment)
    except (ValueError, TypeError, KeyError) as error:
        raise ConfigError(f"--augment: {error}") from error


# -------------------------------------------------------------------- data
def load_data(config):
    """Loads the dataset and applies the robustness transforms to the train split.

    Returns:
        `(splits, transform_report)`.
    """
    from keras_distill import data

    # The split is seeded by the teacher seed, so every student seed sees the same held-out
    # examples and none of them was in the (reused) teacher's training data.
    splits = data.load(config.dataset, data_dir=config.data_dir,
                       validation_split=config.validation_split, seed=config.teacher_seed,
                       limit=config.limit)
    if not splits.in_memory:
        if config.label_noise or config.imbalance_ratio != 1.0:
            raise ConfigError(
                f"{config.dataset} is streamed (too large for memory); label noise and "
                "imbalance transforms need in-memory arrays. Use a smaller dataset.")
        return splits, {}
    report = {}
    x, y = splits.train
    if config.imbalance_ratio != 1.0:
        x, y, report["imbalance"] = data.long_tailed_imbalance(
            x, y, ratio=config.imbalance_ratio, profile=config.imbalance_profile,
            seed=config.teacher_seed, num_classes=splits.num_classes)
    if config.label_noise:
        if config.label_noise_type == "symmetric":
            y, report["label_noise"] = data.symmetric_label_noise(
                y, config.label_noise, splits.num_classes, seed=config.teacher_seed)
        elif config.label_noise_type == "asymmetric":
            y, report["label_noise"] = data.asymmetric_label_noise(
                y, config.label_noise, dataset=config.dataset, num_classes=splits.num_classes,
                seed=config.teacher_seed)
        else:
            raise ConfigError(f"--label_noise_type must be symmetric or asymmetric, got "
                              f"{config.label_noise_type!r}.")
    if report:
        splits = splits.with_train(x, y)
    return splits, report


def pipelines(config, splits, side_inputs=()):
    """Train / validation / test `tf.data` pipelines (train shuffled and augmented).

    Side inputs: `index` (the example's row), and one more key (KD+'s
    `plus_source=unlabeled` reads `unlabeled`) served by `--unlabeled_data`.
    """
    from keras_distill import data

    if not splits.in_memory:
        raise ConfigError(f"{config.dataset}: streamed datasets are not supported by the "
                          "recipes yet; use an in-memory dataset.")
    unlabeled_keys = sorted(set(side_inputs) - {"index"})
    if len(unlabeled_keys) > 1:
        raise ConfigError(f"The recipe data pipeline can provide one side input of unlabeled "
                          f"images (--unlabeled_data), not {unlabeled_keys}.")
    if unlabeled_keys and not config.unlabeled_data:
        raise ConfigError(
            f"--method={config.method} reads unlabeled images (side input "
            f"{unlabeled_keys[0]!r}, e.g. plus_source=unlabeled): give --unlabeled_data="
            f"<{data.unlabeled.SOURCES_HELP}>.")
    # MixUp / CutMix yield soft labels: every split then uses one-hot labels (and the
    # recipes a loss that takes them), so the compiled metrics see one label format.
    soft = bool(getattr(data.get_augmentation(config.augment), "soft_labels", False))
    common = dict(batch_size=config.batch_size, num_classes=splits.num_classes, one_hot=soft)
    train = data.make_dataset(*splits.train, training=True, augment=config.augment,
                              seed=config.seed, with_index="index" in side_inputs, **common)
    validation = data.make_dataset(*splits.validation, **common) \
        if splits.validation is not None else None
    test = data.make_dataset(*splits.test, **common) if splits.test is not None else None
    if unlabeled_keys:
        images = data.load_unlabeled(config.unlabeled_data, splits.input_shape,
                                     seed=config.seed)
        train = data.with_unlabeled(train, images, config.batch_size, key=unlabeled_keys[0],
                                    seed=config.seed,
                                    value_range=data.infer_value_range(splits.train.x))
    return train, validation, test


def steps_per_epoch(config, splits):
    return max(1, int(np.ceil(len(splits.train) / config.batch_size)))


# ------------------------------------------------------------------ models
def build_model(name, splits, role):
    """A zoo model (by name) or a saved `.keras` model (by path), checked against the data."""
    from keras_distill import models

    if name is None:
        raise ConfigError(
            f"No --{role} given and the {splits.name} preset has no default; name a zoo "
            f"model (e.g. --{role}=resnet8x4) or a .keras file.")
    if isinstance(name, str) and (name.endswith(".keras") or os.path.sep in name):
        if not os.path.exists(name):
            raise ConfigError(f"--{role} file {name!r} does not exist.")
        try:
            model = keras.saving.load_model(name, compile=False)
        except Exception as error:  # noqa: BLE001 - any load failure means the same to the user
            raise ConfigError(
                f"--{role} {name!r} could not be loaded as a Keras model ({type(error).__name__}: "
                f"{error}). Pass a file written by model.save('....keras').") from error
    else:
        try:
            model = models.get(name, num_classes=splits.num_classes,
                               input_shape=tuple(splits.input_shape))
        except ValueError as error:
            raise ConfigError(f"--{role}: {error}") from error
    check_model_fits_data(model, splits, role)
    return model


def check_model_fits_data(model, splits, role):
    classes = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if classes is not None and classes != splits.num_classes:
        raise ConfigError(
            f"The {role} {model.name!r} predicts {classes} classes but {splits.name} has "
            f"{splits.num_classes}. Use a {role} trained on {splits.name}, or rebuild it with "
            f"num_classes={splits.num_classes}.")
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if shape and any(a is not None and a != b for a, b in zip(shape, splits.input_shape)):
        raise ConfigError(
            f"The {role} {model.name!r} takes images of shape {shape} but {splits.name} has "
            f"{tuple(splits.input_shape)}. Build it with input_shape={tuple(splits.input_shape)}.")


def feature_taps(model):
    from keras_distill import models

    if model is None:
        return []
    try:
        return list(models.feature_taps(model))
    except (ValueError, KeyError, TypeError):
        return []


def make_optimizer(config, steps, epochs):
    """SGD (momentum, weight decay) with the configured learning-rate schedule."""
    total = max(1, steps * epochs)
    if config.lr_schedule == "step":
        boundaries = [int(e * steps) for e in config.lr_decay_epochs if e < epochs]
        values = [config.learning_rate * config.lr_decay_rate ** i
                  for i in range(len(boundaries) + 1)]
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values) \
            if boundaries else config.learning_rate
    elif config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, total)
    elif config.lr_schedule == "constant":
        learning_rate = config.learning_rate
    else:
        raise ConfigError(f"--lr_schedule must be step, cosine or constant, got "
                          f"{config.lr_schedule!r}.")
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum,
                                    weight_decay=config.weight_decay or None)
    if config.optimizer == "adam":
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay or 0.0)
    raise ConfigError(f"--optimizer must be sgd or adam, got {config.optimizer!r}.")


# --------------------------------------------------------------- callbacks
class EpochAccuracy(keras.callbacks.Callback):
    """Records a model's test accuracy after every epoch (for best and last epoch).

    A resumed run keeps the epochs it finished before the interruption: they
    are read back from the run's `history.csv` (written by `CSVLogger`, which
    sees the `test_accuracy` this callback adds to the epoch logs), and an
    epoch trained again after a crash replaces its earlier row.

    Args:
        model_fn: `() -> keras.Model` to evaluate (the student inside a Distiller).
        dataset: Batched `(x, y)` test dataset.
        history_csv: Optional `history.csv` of an earlier, interrupted attempt.
    """

    def __init__(self, model_fn, dataset, history_csv=None):
        super().__init__()
        self.model_fn = model_fn
        self.dataset = dataset
        self.by_epoch = read_history_column(history_csv, "test_accuracy") if history_csv else {}

    @property
    def history(self):
        """Test accuracy of epochs 1, 2, ... in order."""
        return [self.by_epoch[epoch] for epoch in sorted(self.by_epoch)]

    def on_epoch_end(self, epoch, logs=None):
        accuracy = evaluate_accuracy(self.model_fn(), self.dataset)
        # an epoch trained again (after a crash) replaces its row and any later ones
        self.by_epoch = {e: a for e, a in self.by_epoch.items() if e < epoch}
        self.by_epoch[epoch] = accuracy
        if logs is not None:
            logs["test_accuracy"] = accuracy


def read_history_column(path, column):
    """`{epoch: value}` of one column of a CSVLogger file (later rows win)."""
    import csv

    values = {}
    if not path or not os.path.exists(path):
        return values
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get(column) not in (None, ""):
                values[int(row["epoch"])] = float(row[column])
    return values


def standard_callbacks(config, model_dir, test_dataset=None, model_fn=None, extra=()):
    """NaN guard, `extra` (a method's), test accuracy, logs, checkpoints, atomic resume.

    Order matters (callbacks run in list order): the guard is first, so a NaN
    stops `fit` before anything of that epoch is written; the backup is last,
    so it commits an epoch only after every other callback (a method's mask or
    schedule, the checkpoints, the logs) is done with it. Pass the training
    data through `resumable(train, callbacks)` so a resumed run reads the
    same data order as an uninterrupted one.
    """
    from keras_distill.callbacks import TrainedStateCheckpoint
    from keras_distill.callbacks.guards import AtomicBackupAndRestore, NonFiniteGuard

    backup_dir = os.path.join(model_dir, "backup")
    callbacks = [NonFiniteGuard(
        hint=f"The last complete epoch is backed up in {backup_dir} (rerun the same command "
             f"to resume from it) and the student of each epoch is in "
             f"{os.path.join(model_dir, 'checkpoints')}.")]
    callbacks.extend(extra)
    tracker = None
    if test_dataset is not None and model_fn is not None:
        tracker = EpochAccuracy(model_fn, test_dataset,
                                history_csv=os.path.join(model_dir, "history.csv"))
        callbacks.append(tracker)
    callbacks.append(keras.callbacks.TensorBoard(os.path.join(model_dir, "tensorboard")))
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(model_dir, "history.csv"),
                                               append=True))
    callbacks.append(TrainedStateCheckpoint(os.path.join(model_dir, "checkpoints")))
    callbacks.append(AtomicBackupAndRestore(backup_dir, delete_checkpoint=False))
    return callbacks, tracker


def resumable(train, callbacks):
    """The training data, wrapped by the run's backup for an exact data order on resume."""
    from keras_distill.callbacks.guards import AtomicBackupAndRestore

    for callback in callbacks:
        if isinstance(callback, AtomicBackupAndRestore):
            return callback.track(train)
    return train


# --------------------------------------------------------------- measures
def predict_logits(model, dataset):
    outputs = [np.asarray(model(x, training=False)) for x, *_ in dataset]
    return np.concatenate(outputs)


def dataset_labels(dataset):
    labels = np.concatenate([np.asarray(batch[1]) for batch in dataset])
    return labels.argmax(-1) if labels.ndim == 2 else labels


def evaluate_accuracy(model, dataset):
    logits = predict_logits(model, dataset)
    return float(np.mean(logits.argmax(-1) == dataset_labels(dataset)))


def per_class_accuracy(model, dataset, num_classes):
    """Test accuracy of each class, JSON-ready (None for a class absent from the data)."""
    from keras_distill.callbacks import per_class_accuracy as library_per_class_accuracy

    return [None if np.isnan(a) else float(a)
            for a in library_per_class_accuracy(model, dataset, num_classes)]


def agreement(teacher, student, dataset):
    return float(np.mean(predict_logits(teacher, dataset).argmax(-1)
                         == predict_logits(student, dataset).argmax(-1)))


def accuracy_summary(tracker, model, test):
    history = list(tracker.history) if tracker is not None else []
    if not history:
        history = [evaluate_accuracy(model, test)]
    return {"best": max(history), "last": history[-1],
            "best_epoch": int(np.argmax(history)) + 1, "per_epoch": history}


def print_table(rows, columns, file=None):
    """Prints rows (dicts) as an aligned text table."""
    widths = [max(len(str(c)), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    line = "  ".join(str(c).ljust(w) for c, w in zip(columns, widths))
    print(line, file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(w) for c, w in zip(columns, widths)), file=file)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    return "-" if value is None else str(value)


class Timer:
    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.time() - self.start


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def exclusive(lock_path, waiting="Waiting for another process."):
    """Holds an exclusive lock on `lock_path` for the `with` block; waits while another holds it.

    Processes on one machine sharing a cache (the teacher under --teacher_dir)
    take turns through it. The lock is an OS lock (`fcntl.flock`), so a killed
    holder releases it. Inside a multi-worker cluster (`TF_CONFIG` set) every
    worker trains together and no lock is taken; on systems without `fcntl`
    (Windows) neither.

    Args:
        lock_path: The lock file (created if missing).
        waiting: Printed once when the lock is held by another process.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None
    if fcntl is None or os.environ.get("TF_CONFIG"):
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(waiting, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
