"""Recipe `dml`: Zhang et al. 2018, Deep Mutual Learning (a cohort of students, no teacher)."""

from __future__ import annotations

import dataclasses

import keras

from keras_distill import models
from keras_distill.cohort import Cohort
from keras_distill.losses.dml import DML
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class DMLOptions:
    """Options of `dml`. `peer`: a zoo model name (default a fresh copy of the student's
    architecture); `prediction`: `0` (`call()`, hence the validation metrics, is member 0)
    or `ensemble` (`call()` averages the members' probabilities)."""

    temperature: float = 1.0
    dml_weight: float = 1.0
    ce_weight: float = 1.0
    members: int = 2
    peer: str = ""
    prediction: str = "0"

    def __post_init__(self):
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        if self.members < 2:
            raise registry.OptionError(f"DML needs members >= 2, got {self.members}.")
        for key in ("dml_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def _peer(context, peer_name, index):
    """A new member: the `peer_name` zoo model, or a fresh copy of the student's architecture."""
    if peer_name:
        peer = models.get(peer_name, num_classes=context.num_classes,
                          input_shape=tuple(context.student.input_shape[1:]))
    else:
        peer = keras.models.clone_model(context.student)  # fresh, independent initialisation
    peer.name = f"{context.student.name}_peer{index}"
    return peer


def build(context):
    """The student and `members - 1` peers trained as a `Cohort`; the recipe tests and
    exports member 0, the student it built."""
    options = context.options
    prediction = int(options.prediction) if options.prediction.isdigit() else options.prediction

    def build_cohort(context, spec, weights=None):
        # Called as (context, spec) by recipes/distill.py, or (context, terms, weights).
        if isinstance(spec, registry.MethodSpec):
            terms, weights = spec.terms, spec.weights
        else:
            terms = spec
        members = [context.student] + [_peer(context, options.peer, i)
                                      for i in range(1, options.members)]
        return Cohort(members, distillation_losses=terms, distillation_loss_weights=weights,
                      student_loss_weight=options.ce_weight, prediction=prediction)

    return registry.MethodSpec(
        terms=[DML(temperature=options.temperature)], weights=[options.dml_weight],
        student_loss_weight=options.ce_weight, model_builder=build_cohort,
        notes="Cohort of students trained together; no teacher. The student is member 0.")


METHOD = registry.Method(
    build, DMLOptions, page="dml.md", needs_teacher=False,
    description="Zhang et al. 2018: 2 students trained together, CE + KL(p_peer || p_self), T=1")
