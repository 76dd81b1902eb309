"""Callbacks that change distillation during training by assigning variables."""

from keras_distill.callbacks.checkpoint import TrainedStateCheckpoint
from keras_distill.callbacks.guards import (
    AtomicBackupAndRestore, NonFiniteGuard, NonFiniteLossError)
from keras_distill.callbacks.undistillable import (
    PerClassAccuracyHistory, UndistillableClasses, per_class_accuracy, reference_per_class_accuracy)
from keras_distill.callbacks.variable_schedule import VariableSchedule

__all__ = ["AtomicBackupAndRestore", "NonFiniteGuard", "NonFiniteLossError",
           "PerClassAccuracyHistory",
           "TrainedStateCheckpoint", "UndistillableClasses", "VariableSchedule",
           "per_class_accuracy", "reference_per_class_accuracy"]
