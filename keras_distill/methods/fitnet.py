"""Recipes `fitnet` (Romero et al. 2015: CE + hint) and `fitnet_two_stage` (hint, then KD)."""

from __future__ import annotations

import dataclasses

import keras

from keras_distill.callbacks.variable_schedule import VariableSchedule
from keras_distill.losses.fitnet import FitNet
from keras_distill.losses.kd import KD
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class FitNetOptions:
    """Options of `fitnet`. Taps default to the middle stage (the reference's
    `hint_layer=2`: "stage2" of a 3- or 4-stage zoo model)."""

    teacher_tap: str | None = None
    student_tap: str | None = None
    hint_weight: float = 100.0
    ce_weight: float = 1.0

    def __post_init__(self):
        for key in ("hint_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


@dataclasses.dataclass(frozen=True)
class FitNetTwoStageOptions(FitNetOptions):
    """Options of `fitnet_two_stage`: hint-only for `init_epochs` (None: min(30, epochs // 8),
    at least 1), then `kd_weight` KD at `temperature` + `ce_weight` CE."""

    init_epochs: int | None = None
    kd_weight: float = 0.9
    ce_weight: float = 0.1
    temperature: float = 4.0

    def __post_init__(self):
        super().__post_init__()
        registry.check(self.kd_weight >= 0, "kd_weight", self.kd_weight, "a float >= 0")
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")


def two_phase_weights(phase_one, phase_two, switch_epoch):
    """Weight variables holding `phase_one` values until `switch_epoch`, then `phase_two`.

    Args:
        phase_one: Dict name -> weight during epochs `[0, switch_epoch)`.
        phase_two: Dict name -> weight from `switch_epoch` on (same names).
        switch_epoch: First epoch (0-based) of phase two.

    Returns:
        `(variables, callbacks)`: dict name -> `keras.Variable` (pass them as
        the Distiller's weights) and the `VariableSchedule`s that switch them.
    """
    variables, callbacks = {}, []
    for name, first in phase_one.items():
        second = float(phase_two[name])
        variables[name] = keras.Variable(float(first), trainable=False, dtype="float32",
                                         name=f"{name}_phase_weight")
        callbacks.append(VariableSchedule(
            variables[name],
            lambda epoch, a=float(first), b=second: a if epoch < switch_epoch else b))
    return variables, callbacks


def _hint_taps(context):
    def middle(taps):
        taps = list(taps)
        return taps[(len(taps) - 1) // 2] if taps else "stage2"
    options = context.options
    return (options.teacher_tap or middle(context.teacher_taps),
            options.student_tap or middle(context.student_taps))


def build(context):
    teacher_tap, student_tap = _hint_taps(context)
    return registry.MethodSpec(terms=[FitNet(teacher_tap, student_tap)],
                               weights=[context.options.hint_weight],
                               student_loss_weight=context.options.ce_weight)


def build_two_stage(context):
    options = context.options
    teacher_tap, student_tap = _hint_taps(context)
    init_epochs = options.init_epochs  # RepDistiller: 30 init epochs
    if init_epochs is None:
        init_epochs = min(30, max(1, context.epochs // 8))
    variables, callbacks = two_phase_weights(
        phase_one={"fitnet": options.hint_weight, "kd": 0.0, "ce": 0.0},
        phase_two={"fitnet": 0.0, "kd": options.kd_weight, "ce": options.ce_weight},
        switch_epoch=init_epochs)
    return registry.MethodSpec(
        terms=[FitNet(teacher_tap, student_tap), KD(options.temperature)],
        weights=[variables["fitnet"], variables["kd"]],
        student_loss_weight=variables["ce"], callbacks=callbacks,
        notes=f"hint-only epochs [0, {init_epochs}), KD from epoch {init_epochs}"
              + ("" if init_epochs < context.epochs else " (never reached: too few epochs)"))


METHOD = registry.Method(
    build, FitNetOptions, page="fitnet.md",
    description="Romero et al. 2015: CE + 100 * MSE(ConvReg(F_s), F_t) at the middle stage "
                "(RepDistiller: -r 1 -a 0 -b 100)")
TWO_STAGE = registry.Method(
    build_two_stage, FitNetTwoStageOptions, page="fitnet.md",
    description="FitNets' two stages: hint-only training (first init_epochs), then KD "
                "(0.1 CE + 0.9 KD, T=4)")
