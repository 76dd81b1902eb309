"""ONE: Lan et al. 2018, On-the-fly Native Ensemble (recipe method `one`).

The model is `keras_distill.NativeEnsemble`; its term is KD at T = 3
between the gated ensemble of the branches (under stop-gradient) and each
branch. This file registers the recipe method.
"""

from keras_distill import methods
from keras_distill.losses.kd import KD
from keras_distill.schedules import SigmoidRampUp

# The reference code ramps the distillation weight up over 80 of 300 epochs.
RAMPUP_FRACTION = 80 / 300


@methods.register(
    "one", needs_teacher=False,
    description="Lan et al. 2018: 3 branches of the student's last stage, CE on each and on "
                "their gated ensemble + T=3 KD from the ensemble to each branch")
def one_method(context):
    """ONE on the recipe's student: no teacher; the deployed student is branch 0.

    Options: `branches` (3), `split` (layer the branches start from; default
    the student's second-to-last feature tap, so the last stage is
    branched), `temperature` (3.0), `one_weight` (1.0), `rampup_epochs`
    (default 80/300 of the epochs, the reference's sigmoid ramp-up; 0 for a
    constant weight), `ce_weight` (1.0), `ensemble_weight` (1.0).
    """
    from keras_distill.native_ensemble import NativeEnsemble

    split = context.option("split", "")
    if not split:
        if len(context.student_taps) < 2:
            raise ValueError(
                "one needs the layer where the branches start: the student has no feature "
                "taps to choose from. Pass --method_options split=<layer name>.")
        split = context.student_taps[-2]
    rampup = context.option("rampup_epochs", round(RAMPUP_FRACTION * context.epochs))
    weight = context.option("one_weight", 1.0)
    if rampup:
        weight = SigmoidRampUp(weight, ramp_steps=int(rampup) * context.steps_per_epoch)
    branches = context.option("branches", 3)
    ce_weight = context.option("ce_weight", 1.0)
    ensemble_weight = context.option("ensemble_weight", 1.0)
    term = KD(temperature=context.option("temperature", 3.0), name="one")

    def build(context, spec):
        return NativeEnsemble(context.student, split=split, branches=branches,
                              distillation_loss=spec.terms[0],
                              distillation_loss_weight=spec.weights[0],
                              student_loss_weight=ce_weight,
                              ensemble_loss_weight=ensemble_weight)

    return methods.MethodSpec(
        terms=[term], weights=[weight], student_loss_weight=ce_weight, model_builder=build,
        notes=f"ONE: {branches} branches from {split!r}, ramp-up {rampup} epochs; the student "
              "is branch 0.")
