"""TLLM (Teach Less, Learn More): KD that stops distilling on undistillable classes.

The maths is `keras_distill.losses.ClassMask` around a distillation term;
the identification is `keras_distill.callbacks.undistillable.UndistillableClasses`.
This file holds the term factory and the `tllm` recipe.
"""

import json

import numpy as np
import keras
import tensorflow as tf

from keras_distill import methods
from keras_distill.callbacks.undistillable import (
    UndistillableClasses, per_class_accuracy, reference_per_class_accuracy)
from keras_distill.losses.combinators import ClassMask
from keras_distill.losses.kd import KD


def tllm_term(num_classes, term=None, temperature=4.0, mode="hard_label", initial_mask=None):
    """TLLM's loss term: KD for distillable classes, the hard label for the others.

    Per example (`m` the class mask, 1 for an undistillable class, a
    variable that `UndistillableClasses` assigns):

        L = (1 - m[y]) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
            + m[y] * CE(y, softmax(z_s))                  (mode "hard_label")

    so with weights `w_ce * CE + w_kd * L` a sample of an undistillable
    class carries the hard-label loss only, at its full weight
    `w_ce + w_kd`. Mode `"drop"` removes the term without replacing it (the
    sample keeps only `w_ce * CE`: 0.1 under KD's usual 0.1 / 0.9 balance,
    which starved the masked classes in our first measurement).

    Args:
        num_classes: Number of classes `K`.
        term: The distillation term to mask (default `KD(temperature)`);
            any per-example term works.
        temperature: `T` of the default KD term (default 4.0).
        mode: `ClassMask` mode: `"hard_label"` (default), `"drop"`,
            `"renormalize"` (drop, and remove the masked classes from every
            teacher distribution) or `"one_hot"` (masked samples distil
            towards their one-hot label at temperature T).
        initial_mask: Classes masked before the first update (default none).

    Returns:
        A `ClassMask`, named like the inner term (`"kd"`).

    Reference:
        Zhu, Liu, Xu, Liu, Meng, Wang, Ou, Tang. "Teach Less, Learn More: On
        the Undistillable Classes in Knowledge Distillation". NeurIPS 2022.
    """
    return ClassMask(term if term is not None else KD(temperature=temperature),
                     num_classes=num_classes, mode=mode, initial_mask=initial_mask)


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
        from keras_distill.data import make_dataset
        return make_dataset(x, y, batch_size=batch_size, training=training, seed=seed,
                            num_classes=num_classes)
    return x, y


@methods.register("tllm", description="TLLM: KD masked on undistillable classes "
                  "(per-class val accuracy < reference - delta), 0.9 KD + 0.1 CE")
def tllm_method(context):
    num_classes = context.num_classes
    validation = _as_data(context.validation_data, num_classes, 256)
    if validation is None:
        raise ValueError("tllm needs validation data carved from the training set "
                         "(MethodContext.validation_data; never the test set) to measure "
                         "per-class accuracy. Enable a validation split.")
    term = tllm_term(num_classes, temperature=context.option("temperature", 4.0),
                     mode=context.option("mask_mode", "hard_label"))
    reference = context.option("reference_accuracy", None)
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
        epochs = context.option("reference_epochs", context.epochs)
        student = context.student

        def reference():  # one extra student training, run when fit starts
            return reference_per_class_accuracy(
                lambda: keras.models.clone_model(student), train, validation, epochs,
                num_classes=num_classes, per_epoch=True)
    freeze = context.option("freeze_epoch", None)
    callback = UndistillableClasses(
        term, validation, reference, delta=context.option("delta", 0.0),
        update_every=context.option("update_every", 1),
        freeze_epoch=None if freeze in (None, "", "none") else int(freeze),
        report_dir=context.option("report_dir", context.model_dir))
    return methods.MethodSpec(
        terms=[term], weights=[context.option("kd_weight", 0.9)],
        student_loss_weight=context.option("ce_weight", 0.1), callbacks=[callback],
        notes="TLLM: " + ("reference trajectory from a labels-only student"
                          if context.reference_history is not None
                          else "given or baseline reference" if not callable(reference)
                          else f"reference student trained for {epochs} epochs"))
