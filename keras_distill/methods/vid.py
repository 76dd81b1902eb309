"""Recipe `vid`: Ahn et al. 2019, CE + Gaussian NLL of every teacher stage given the student's."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.vid import VID
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class VIDOptions:
    """Options of `vid`. Taps (names joined by '+') default to every stage tap."""

    teacher_taps: tuple[str, ...] | None = None
    student_taps: tuple[str, ...] | None = None
    init_variance: float = 5.0
    eps: float = 1e-5
    vid_weight: float = 1.0
    ce_weight: float = 1.0

    def __post_init__(self):
        for key in ("init_variance", "eps"):
            registry.check(getattr(self, key) > 0, key, getattr(self, key), "a float > 0")
        for key in ("vid_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def build(context):
    options = context.options
    teacher_taps = list(options.teacher_taps if options.teacher_taps is not None
                        else context.teacher_taps)
    student_taps = list(options.student_taps if options.student_taps is not None
                        else context.student_taps)
    pairs = min(len(teacher_taps), len(student_taps))
    if not pairs:
        raise ValueError(
            "VID needs stage taps, and the teacher/student stage taps are unknown. Pass "
            "--method_options teacher_taps=stage1+stage2,student_taps=stage1+stage2.")
    term = VID(teacher_taps[:pairs], student_taps[:pairs],
               init_variance=options.init_variance, eps=options.eps)
    return registry.MethodSpec(terms=[term], weights=[options.vid_weight],
                               student_loss_weight=options.ce_weight)


METHOD = registry.Method(
    build, VIDOptions, page="vid.md",
    description="Ahn et al. 2019: CE + 1 * Gaussian NLL of every teacher stage given the "
                "student's (RepDistiller: -r 1 -a 0 -b 1)")
