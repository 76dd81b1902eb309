"""Recipe `sp`: Tung & Mori 2019, similarity-preserving KD on the last stage."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.sp import SP
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class SPOptions:
    """Options of `sp`. Taps default to the last feature stage (else "embedding")."""

    teacher_tap: str | None = None
    student_tap: str | None = None
    sp_weight: float = 3000.0
    ce_weight: float = 1.0

    def __post_init__(self):
        for key in ("sp_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def last_stage(taps, default="embedding"):
    """The last feature-stage tap of an ordered list, or `default`."""
    return taps[-1] if taps else default


def build(context):
    options = context.options
    term = SP(teacher_tap=options.teacher_tap or last_stage(context.teacher_taps),
              student_tap=options.student_tap or last_stage(context.student_taps))
    return registry.MethodSpec(terms=[term], weights=[options.sp_weight],
                               student_loss_weight=options.ce_weight)


METHOD = registry.Method(
    build, SPOptions, page="sp.md",
    description="Tung & Mori 2019: similarity-preserving, batch similarity matrices of the "
                "last stage; CE 1 + SP 3000")
