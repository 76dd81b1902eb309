"""Recipe `fsp`: Yim et al. 2017, FSP-only training then CE (RepDistiller), or jointly."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.fsp import FSP
from keras_distill.methods import registry
from keras_distill.methods.fitnet import two_phase_weights


@dataclasses.dataclass(frozen=True)
class FSPOptions:
    """Options of `fsp`. Taps (joined by '+') default to the stem and every stage;
    `align_channels`: auto (when the widths differ), true or false; `fsp_weight=None`:
    1 (two_stage) or 50 (joint); `init_epochs=None`: min(30, epochs // 8), at least 1."""

    teacher_taps: tuple[str, ...] | None = None
    student_taps: tuple[str, ...] | None = None
    align_channels: str = "auto"
    mode: str = "two_stage"
    fsp_weight: float | None = None
    ce_weight: float = 1.0
    init_epochs: int | None = None

    def __post_init__(self):
        registry.check(self.mode in ("two_stage", "joint"), "mode", self.mode,
                       "'two_stage' or 'joint'")
        registry.check(self.align_channels.lower() in ("auto", "1", "0", "true", "false",
                                                       "yes", "no"),
                       "align_channels", self.align_channels, "auto, true or false")
        for key in ("fsp_weight", "ce_weight"):
            value = getattr(self, key)
            registry.check(value is None or value >= 0, key, value, "a float >= 0")


def _widths(model, taps):
    """Channels of each tap, or None when the model's layers cannot be read."""
    try:
        return [model.get_layer(tap).output.shape[-1] for tap in taps]
    except (ValueError, AttributeError):
        return None


def _has_layer(model, name):
    try:
        model.get_layer(name)
        return True
    except (ValueError, AttributeError):
        return False


def build(context):
    options = context.options
    teacher_taps = list(options.teacher_taps if options.teacher_taps is not None
                        else context.teacher_taps)
    student_taps = list(options.student_taps if options.student_taps is not None
                        else context.student_taps)
    pairs = min(len(teacher_taps), len(student_taps))
    teacher_taps, student_taps = teacher_taps[:pairs], student_taps[:pairs]
    if options.teacher_taps is None and all(
            _has_layer(m, "stem") for m in (context.teacher, context.student)):
        # The reference's feat[:-1] starts at the stem's output.
        teacher_taps, student_taps = ["stem"] + teacher_taps, ["stem"] + student_taps
    if len(teacher_taps) < 2:
        raise ValueError(
            "FSP needs at least two taps per network and the stage taps are unknown. Pass "
            "--method_options teacher_taps=stage1+stage2+stage3,student_taps=stage1+stage2+stage3.")
    if options.align_channels == "auto":  # align only when the widths differ
        align = _widths(context.teacher, teacher_taps) != _widths(context.student, student_taps)
    else:
        align = options.align_channels.lower() in ("1", "true", "yes")
    term = FSP(teacher_taps, student_taps, align_channels=align)
    note = " (student taps aligned to the teacher's widths by learned 1x1 convolutions)" \
        if align else ""
    if options.mode == "joint":
        return registry.MethodSpec(
            terms=[term], weights=[50.0 if options.fsp_weight is None else options.fsp_weight],
            student_loss_weight=options.ce_weight,
            notes=f"CE + FSP jointly on taps {teacher_taps}{note}")
    init_epochs = options.init_epochs
    if init_epochs is None:
        init_epochs = min(30, max(1, context.epochs // 8))
    variables, callbacks = two_phase_weights(
        phase_one={"fsp": 1.0 if options.fsp_weight is None else options.fsp_weight, "ce": 0.0},
        phase_two={"fsp": 0.0, "ce": options.ce_weight}, switch_epoch=init_epochs)
    return registry.MethodSpec(
        terms=[term], weights=[variables["fsp"]], student_loss_weight=variables["ce"],
        callbacks=callbacks,
        notes=f"FSP-only epochs [0, {init_epochs}) on taps {teacher_taps}, then CE only"
              + ("" if init_epochs < context.epochs else " (never reached: too few epochs)")
              + note)


METHOD = registry.Method(
    build, FSPOptions, page="fsp.md",
    description="Yim et al. 2017: FSP-only training of the student (first init_epochs), then "
                "CE (RepDistiller); mode=joint: CE + 50 FSP")
