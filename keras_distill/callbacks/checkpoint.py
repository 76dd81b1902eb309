"""Checkpoints of what is trained: the student, the adapters, the terms' state."""

import os

import keras
import tensorflow as tf


class TrainedStateCheckpoint(keras.callbacks.Callback):
    """Saves the trained parts of a run after every epoch (never the teacher).

    For a `Distiller` it saves the student, the terms' adapters and their state
    variables (a DPK ratio, a CRD memory bank, a TLLM mask); for any other model,
    the model. `tf.train.CheckpointManager` writes the data files first and
    the `checkpoint` index last, so an interrupted save is never the latest.

    Args:
        directory: Folder of the checkpoints.
        max_to_keep: How many recent checkpoints to keep.

    Example:

    ```python
    distiller.fit(data, callbacks=[TrainedStateCheckpoint("run/checkpoints")])
    TrainedStateCheckpoint.restore_student(student, "run/checkpoints")
    ```
    """

    def __init__(self, directory, max_to_keep=2):
        super().__init__()
        self.directory = directory
        self.max_to_keep = max_to_keep
        self._manager = None

    @staticmethod
    def trackables(model):
        if hasattr(model, "student") and hasattr(model, "adapters"):
            return {"student": model.student, "adapters": list(model.adapters),
                    "state": list(model.term_state_variables)}
        return {"student": model}

    def on_train_begin(self, logs=None):
        checkpoint = tf.train.Checkpoint(**self.trackables(self.model))
        self._manager = tf.train.CheckpointManager(checkpoint, self.directory,
                                                   max_to_keep=self.max_to_keep,
                                                   checkpoint_name="trained")

    def on_epoch_end(self, epoch, logs=None):
        self._manager.save(checkpoint_number=epoch + 1)

    @staticmethod
    def restore_student(student, directory):
        """Restores only the student from the latest checkpoint in `directory`."""
        latest = tf.train.latest_checkpoint(directory)
        if latest is None:
            raise FileNotFoundError(f"No complete checkpoint in {directory!r}.")
        tf.train.Checkpoint(student=student).restore(latest).expect_partial()
        return os.path.basename(latest)
