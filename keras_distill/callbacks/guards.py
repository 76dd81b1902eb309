"""Callbacks that guard a run against faults: non-finite losses and killed writes.

- `NonFiniteGuard` stops training at the first NaN/Inf in a logged loss,
  naming the term and the step, before any callback saves that epoch.
- `AtomicBackupAndRestore` is `keras.callbacks.BackupAndRestore` with an
  atomic commit and an exact data order on resume.

Put the guard FIRST and the backup LAST in the callback list: callbacks run
in list order, so the guard raises before anything is written, and the
backup commits an epoch only after every other callback (a method's
schedule, checkpoints, logs) has finished with it.
"""

from __future__ import annotations

import glob
import json
import math
import os
import warnings

import keras
import tensorflow as tf

STATE_FILE = "backup.json"
_WEIGHTS_PATTERN = "state-{number:06d}.weights.h5"


class NonFiniteLossError(FloatingPointError):
    """A logged loss became NaN or Inf; the message names it and the step."""


def _non_finite(logs):
    bad = {}
    for key, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # lists, strings: not a scalar metric
        if not math.isfinite(number):
            bad[key] = number
    return bad


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or Inf in the logs, naming the culprit.

    After every training batch (and at the end of every epoch, which adds the
    validation logs) it checks each logged scalar. The `Distiller` logs every
    term under its name, so the error names the term that went non-finite
    first, with the global step (`optimizer.iterations - 1`, 0-based), the
    epoch and the batch.

    It raises `NonFiniteLossError` instead of setting `stop_training` (as
    `keras.callbacks.TerminateOnNaN` does): with `stop_training` Keras still
    ends the epoch and calls `on_epoch_end`, so `BackupAndRestore` and
    checkpoints would save the NaN weights over the last good state. Raising
    in the guard, placed FIRST in the callback list, stops `fit` before any
    later callback runs, so the previous epoch's backup and checkpoints stay
    the latest.

    Args:
        hint: Optional text appended to the message (e.g. where the last good
            checkpoint is and how to resume).

    Example:

    ```python
    distiller.fit(train, epochs=10, callbacks=[
        NonFiniteGuard(), TrainedStateCheckpoint("run/checkpoints"),
        AtomicBackupAndRestore("run/backup")])
    ```
    """

    def __init__(self, hint=None):
        super().__init__()
        self.hint = hint
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = _non_finite(logs)
        if bad:
            step = self._step()
            where = (f"training step {step} (epoch {self._epoch + 1}, batch {batch + 1})"
                     if step is not None else f"epoch {self._epoch + 1}, batch {batch + 1}")
            self._raise(bad, where)

    def on_epoch_end(self, epoch, logs=None):
        bad = _non_finite(logs)
        if bad:
            self._raise(bad, f"the end of epoch {epoch + 1} (validation included)")

    def _step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        return int(keras.ops.convert_to_numpy(optimizer.iterations)) - 1

    def _raise(self, bad, where):
        terms = list(getattr(self.model, "term_names", []))
        names = terms + [f"val_{t}" for t in terms]
        culprits = [k for k in names if k in bad] or \
            [k for k in ("student_loss", "val_student_loss") if k in bad] or list(bad)
        others = [k for k in bad if k not in culprits]
        kind = "term" if culprits[0] in names else "value"
        described = ", ".join(f"{k}={bad[k]}" for k in culprits)
        message = (
            f"Non-finite loss at {where}: {kind} {described}"
            + (f" (also non-finite: {', '.join(f'{k}={bad[k]}' for k in others)})"
               if others else "")
            + ". Training was stopped before anything of this epoch was saved: the last "
            "checkpoint and backup (previous epochs) are intact. Common causes: a learning "
            "rate too high, NaN/Inf in the input data, labels outside [0, num_classes) under "
            "jit_compile=True (XLA drops the label check), or an unstable term setting (e.g. "
            "a temperature near 0).")
        if self.hint:
            message += " " + self.hint
        raise NonFiniteLossError(message)


def _fsync(path):
    if "://" in path:
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose saves are atomic and whose resume is exact.

    Keras 3.15's `BackupAndRestore._save_model` overwrites
    `latest.weights.h5` in place, then writes `training_metadata.json`. A
    process killed during the first write leaves a truncated file that the
    next run fails to load (without `double_checkpoint`); killed between the
    two, the next run loads epoch `k + 1`'s weights with epoch `k`'s counter
    and silently trains epoch `k + 1` twice. Here every save writes a new
    `state-<n>.weights.h5`, flushes it to disk, and then commits it by
    atomically renaming a new `backup.json` (naming the file and the epoch)
    over the old one. A half-written file is never named by `backup.json`,
    so it is never loaded; it is deleted by the next run.

    Exact resume also needs the data: a `tf.data` pipeline shuffled with a
    seed and `reshuffle_each_iteration=True` draws a new order for every
    iterator it creates, and a new process starts again at the first order.
    Pass the training dataset through `track()`: the returned dataset creates
    its underlying iterator only when an epoch really reads it (Keras creates
    more iterators than it reads), and on resume the callback replays the
    iterators of the epochs already trained, so epoch `k` sees the same order
    and augmentation as in an uninterrupted run.

    Args:
        backup_dir: Folder holding only this run's backup.
        save_freq: `"epoch"` (exact resume) or an integer number of batches
            (Keras semantics: resumes at the start of the saved epoch).
        delete_checkpoint: Delete the backup when `fit` ends normally.

    Example:

    ```python
    backup = AtomicBackupAndRestore("run/backup")
    train = backup.track(train)
    distiller.fit(train, epochs=30, callbacks=[NonFiniteGuard(), backup])
    # killed? rerun the same code: it resumes from the last complete epoch.
    ```
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=False,
                         delete_checkpoint=delete_checkpoint)
        self._state_path = os.path.join(backup_dir, STATE_FILE)
        self._tracked = []
        self._save_number = 0
        self.restored_epoch = None

    # ------------------------------------------------------------------ data
    def track(self, dataset):
        """Returns `dataset` wrapped so that a resumed run sees the same data order.

        Args:
            dataset: The training `tf.data.Dataset` (seeded shuffling and
                augmentation).

        Returns:
            A dataset with the same elements and cardinality (an infinite,
            `repeat()`-ed dataset is returned unchanged, with a warning).
        """
        if not isinstance(dataset, tf.data.Dataset):
            return dataset
        cardinality = int(dataset.cardinality())
        if cardinality == int(tf.data.INFINITE_CARDINALITY):
            warnings.warn("AtomicBackupAndRestore.track: a repeated (infinite) dataset is read "
                          "by one iterator across epochs; its position cannot be replayed, so a "
                          "resumed run restarts its data stream.", stacklevel=2)
            return dataset
        self._tracked.append(dataset)
        wrapped = tf.data.Dataset.from_tensors(0).flat_map(lambda _: dataset)
        if cardinality >= 0:
            wrapped = wrapped.apply(tf.data.experimental.assert_cardinality(cardinality))
        return wrapped

    def _fast_forward(self, epochs):
        for dataset in self._tracked:
            for _ in range(epochs):
                iter(dataset)  # draws (and discards) that epoch's shuffle and augmentation seeds

    # -------------------------------------------------------------- restore
    def _read_state(self):
        if not tf.io.gfile.exists(self._state_path):
            return None
        with tf.io.gfile.GFile(self._state_path, "r") as handle:
            return json.loads(handle.read())

    def on_train_begin(self, logs=None):
        state = self._read_state()
        if state is None:
            super().on_train_begin(logs)  # a backup written by keras' own callback, if any
            epoch = None
            if tf.io.gfile.exists(self._training_metadata_path):
                with tf.io.gfile.GFile(self._training_metadata_path, "r") as handle:
                    epoch = json.loads(handle.read()).get("epoch")
        else:
            self._restore(state)
            epoch = state["epoch"]
        if epoch:
            self.restored_epoch = int(epoch)
            self._fast_forward(self.restored_epoch)
        self._remove_stale(state)

    def _restore(self, state):
        path = os.path.join(self.backup_dir, state["weights"])
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(
                f"The backup {self._state_path} names {path}, which is missing. Delete "
                f"{self.backup_dir} to train from the start.")
        if not self.model.built:
            raise ValueError(
                "AtomicBackupAndRestore needs a built model: call it on a batch before fit().")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(path)
        except Exception as error:  # noqa: BLE001 - any mismatch means the same to the user
            raise ValueError(
                f"Cannot resume from the backup {path} (epoch {state['epoch']}): it does not "
                f"fit this model ({type(error).__name__}: {error}). It was written by a run "
                "with another model, method or optimizer. Rerun the original command to "
                f"resume it, or use a new output folder (or delete {self.backup_dir}) to "
                "start over.") from error
        self.model._initial_epoch = int(state["epoch"])
        self._save_number = int(state.get("number", 0))

    def _remove_stale(self, state):
        keep = state["weights"] if state else None
        for path in glob.glob(os.path.join(self.backup_dir, "state-*.weights.h5")) + \
                glob.glob(os.path.join(self.backup_dir, "*.tmp")):
            if os.path.basename(path) != keep:
                try:
                    os.remove(path)
                except OSError:
                    pass

    # ----------------------------------------------------------------- save
    def on_epoch_end(self, epoch, logs=None):
        bad = _non_finite(logs)
        if bad and self.save_freq == "epoch":
            self._current_epoch = epoch + 1
            self._last_batch_seen = 0
            warnings.warn(f"AtomicBackupAndRestore: epoch {epoch + 1} logged non-finite "
                          f"values {sorted(bad)}; not backing it up (the previous backup "
                          "stays the latest).", stacklevel=2)
            return
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        """Writes `state-<n>.weights.h5`, then commits it by renaming `backup.json`."""
        self._save_number += 1
        name = _WEIGHTS_PATTERN.format(number=self._save_number)
        path = os.path.join(self.backup_dir, name)
        state = {"epoch": int(self._current_epoch), "batch": int(self._last_batch_seen),
                 "weights": name, "number": self._save_number}
        try:
            tf.io.gfile.makedirs(self.backup_dir)
            self._write_weights(path)
            self._commit(state)
        except OSError as error:
            raise OSError(
                error.errno, f"Could not write the training backup in {self.backup_dir} "
                f"({error.strerror or error}). The previous backup is intact; free disk space "
                "(or fix the folder's permissions) and rerun the same command to resume "
                "from it.") from error
        self._remove_stale(state)

    def _write_weights(self, path):
        self.model.save_weights(path, overwrite=True)
        _fsync(path)

    def _commit(self, state):
        temporary = self._state_path + ".tmp"
        with tf.io.gfile.GFile(temporary, "w") as handle:
            handle.write(json.dumps(state))
        _fsync(temporary)
        tf.io.gfile.rename(temporary, self._state_path, overwrite=True)  # the commit point
        if "://" not in self.backup_dir:
            _fsync(self.backup_dir)


__all__ = ["AtomicBackupAndRestore", "NonFiniteGuard", "NonFiniteLossError"]
