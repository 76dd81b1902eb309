"""Recipe `one`: Lan et al. 2018, On-the-fly Native Ensemble (no teacher).

The model is `keras_distill.NativeEnsemble`; its term is KD at T = 3
between the gated ensemble of the branches (under stop-gradient) and each
branch. The deployed student is branch 0.
"""

from __future__ import annotations

import dataclasses

from keras_distill.losses.kd import KD
from keras_distill.methods import registry
from keras_distill.native_ensemble import NativeEnsemble
from keras_distill.schedules import SigmoidRampUp

# The reference code ramps the distillation weight up over 80 of 300 epochs.
RAMPUP_FRACTION = 80 / 300


@dataclasses.dataclass(frozen=True)
class ONEOptions:
    """Options of `one`. `split`: the layer the branches start from (default the student's
    second-to-last feature tap, so the last stage is branched); `rampup_epochs=None`:
    80/300 of the epochs (the reference's sigmoid ramp-up; 0 for a constant weight)."""

    branches: int = 3
    split: str = ""
    temperature: float = 3.0
    one_weight: float = 1.0
    rampup_epochs: int | None = None
    ce_weight: float = 1.0
    ensemble_weight: float = 1.0

    def __post_init__(self):
        registry.check(self.branches >= 2, "branches", self.branches, "an integer >= 2")
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        registry.check(self.rampup_epochs is None or self.rampup_epochs >= 0, "rampup_epochs",
                       self.rampup_epochs, "an integer >= 0")
        for key in ("one_weight", "ce_weight", "ensemble_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def build(context):
    options = context.options
    split = options.split
    if not split:
        if len(context.student_taps) < 2:
            raise ValueError(
                "one needs the layer where the branches start: the student has no feature "
                "taps to choose from. Pass --method_options split=<layer name>.")
        split = context.student_taps[-2]
    rampup = options.rampup_epochs
    if rampup is None:
        rampup = round(RAMPUP_FRACTION * context.epochs)
    weight = options.one_weight
    if rampup:
        weight = SigmoidRampUp(weight, ramp_steps=int(rampup) * context.steps_per_epoch)

    def build_ensemble(context, spec):
        return NativeEnsemble(context.student, split=split, branches=options.branches,
                              distillation_loss=spec.terms[0],
                              distillation_loss_weight=spec.weights[0],
                              student_loss_weight=options.ce_weight,
                              ensemble_loss_weight=options.ensemble_weight)

    return registry.MethodSpec(
        terms=[KD(temperature=options.temperature, name="one")], weights=[weight],
        student_loss_weight=options.ce_weight, model_builder=build_ensemble,
        notes=f"ONE: {options.branches} branches from {split!r}, ramp-up {rampup} epochs; "
              "the student is branch 0.")


METHOD = registry.Method(
    build, ONEOptions, page="one.md", needs_teacher=False,
    description="Lan et al. 2018: 3 branches of the student's last stage, CE on each and on "
                "their gated ensemble + T=3 KD from the ensemble to each branch")
