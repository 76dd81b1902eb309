"""Recipe `tllm`: Zhu et al. 2022 (Teach Less, Learn More), KD masked on undistillable classes.

The term is `keras_distill.losses.tllm.tllm_term`; the callback
`keras_distill.callbacks.undistillable.UndistillableClasses` finds the
classes. This recipe wires them to the run's validation data and reference.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_distill.callbacks.undistillable import (
    UndistillableClasses, per_class_accuracy, reference_per_class_accuracy)
from keras_distill.data import make_dataset
from keras_distill.losses.tllm import tllm_term
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class TLLMOptions:
    """Options of `tllm`. `reference_accuracy`: K accuracies (a list, `a;b;...` or a JSON
    file; default the run's labels-only student); `reference_epochs=None`: the run's epochs;
    `freeze_epoch=None`: never; `report_dir=None`: the run's folder."""

    temperature: float = 4.0
    mask_mode: str = "hard_label"
    reference_accuracy: Any = None
    reference_epochs: int | None = None
    delta: float = 0.0
    update_every: int = 1
    freeze_epoch: int | None = None
    report_dir: str | None = None
    kd_weight: float = 0.9
    ce_weight: float = 0.1

    def __post_init__(self):
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        registry.check(self.update_every >= 1, "update_every", self.update_every,
                       "an integer >= 1")
        for key in ("kd_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def _load_reference(value, num_classes):
    """K accuracies (or a per-epoch trajectory of them) from a list, `a;b;...`, or a JSON file.

    A JSON file may hold the list, a trajectory (list of lists, e.g. the
    `reference_per_class_accuracy.json` a recipe run writes), or a dict with
    `per_class_accuracy` / `student_accuracy`.
    """
    if isinstance(value, str):
        if value.endswith(".json"):
            with open(value) as handle:
                value = json.load(handle)
            if isinstance(value, dict):
                value = value.get("per_class_accuracy", value.get("student_accuracy"))
        else:
            value = [float(v) for v in value.replace(";", " ").split()]
    values = np.asarray([np.nan if v is None else v for v in value] if _is_flat(value)
                        else [[np.nan if v is None else v for v in row] for row in value],
                        dtype="float64")
    if values.shape[-1:] != (num_classes,) or values.ndim not in (1, 2):
        raise ValueError(f"reference_accuracy must hold {num_classes} per-class accuracies "
                         f"(or one such row per epoch), got shape {values.shape}.")
    return values.tolist()


def _is_flat(value):
    return not any(isinstance(v, (list, tuple)) for v in value)


def _as_data(data, num_classes, batch_size, training=False, seed=None):
    """`(x, y)` arrays of raw integer pixels become the recipes' pipeline (scaled to [0, 1])."""
    if data is None or isinstance(data, tf.data.Dataset):
        return data
    x, y = data  # a pair or an ArraySplit
    if np.issubdtype(np.asarray(x).dtype, np.integer):
        return make_dataset(x, y, batch_size=batch_size, training=training, seed=seed,
                            num_classes=num_classes)
    return x, y


def build(context):
    options, num_classes = context.options, context.num_classes
    validation = _as_data(context.validation_data, num_classes, 256)
    if validation is None:
        raise ValueError("tllm needs validation data carved from the training set "
                         "(MethodContext.validation_data; never the test set) to measure "
                         "per-class accuracy. Enable a validation split.")
    term = tllm_term(num_classes, temperature=options.temperature, mode=options.mask_mode)
    reference = options.reference_accuracy
    if reference is not None:
        reference = _load_reference(reference, num_classes)
    elif context.reference_history is not None:  # the run's recipe, epoch by epoch
        reference = context.reference_history
    elif context.baseline_student is not None:  # final accuracies only: compared every epoch
        reference = per_class_accuracy(context.baseline_student, validation, num_classes)
    else:
        if context.train_data is None:
            raise ValueError(
                "tllm needs the reference student's per-class accuracy: pass "
                "--method_options reference_accuracy=<file.json or a;b;...> (e.g. from a "
                "scratch run), or give MethodContext.train_data so it can train one.")
        train = _as_data(context.train_data, num_classes, 64, training=True, seed=context.seed)
        epochs = options.reference_epochs if options.reference_epochs is not None \
            else context.epochs
        student = context.student

        def reference():  # one extra student training, run when fit starts
            return reference_per_class_accuracy(
                lambda: keras.models.clone_model(student), train, validation, epochs,
                num_classes=num_classes, per_epoch=True)
    callback = UndistillableClasses(
        term, validation, reference, delta=options.delta, update_every=options.update_every,
        freeze_epoch=options.freeze_epoch,
        report_dir=options.report_dir if options.report_dir is not None else context.model_dir)
    return registry.MethodSpec(
        terms=[term], weights=[options.kd_weight], student_loss_weight=options.ce_weight,
        callbacks=[callback],
        notes="TLLM: " + ("reference trajectory from a labels-only student"
                          if context.reference_history is not None
                          else "given or baseline reference" if not callable(reference)
                          else f"reference student trained for {epochs} epochs"))


METHOD = registry.Method(
    build, TLLMOptions, page="tllm.md",
    description="TLLM: KD masked on undistillable classes (per-class val accuracy < "
                "reference - delta), 0.9 KD + 0.1 CE")
