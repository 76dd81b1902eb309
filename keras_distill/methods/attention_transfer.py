"""Recipe `at`: Zagoruyko & Komodakis 2017, CE + 1000 * attention transfer over the stages."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.attention_transfer import AT
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class ATOptions:
    """Options of `at`. Taps (names joined by '+') default to every stage tap."""

    teacher_taps: tuple[str, ...] | None = None
    student_taps: tuple[str, ...] | None = None
    p: float = 2.0
    at_weight: float = 1000.0
    ce_weight: float = 1.0

    def __post_init__(self):
        registry.check(self.p > 0, "p", self.p, "a float > 0")
        for key in ("at_weight", "ce_weight"):
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
            "AT needs stage taps, and the teacher/student stage taps are unknown. Pass "
            "--method_options teacher_taps=stage1+stage2,student_taps=stage1+stage2.")
    # Every stage, paired from the first (zip, as the reference).
    term = AT(teacher_taps=teacher_taps[:pairs], student_taps=student_taps[:pairs], p=options.p)
    return registry.MethodSpec(terms=[term], weights=[options.at_weight],
                               student_loss_weight=options.ce_weight)


METHOD = registry.Method(
    build, ATOptions, page="attention_transfer.md",
    description="Zagoruyko & Komodakis 2017: CE + 1000 * sum over stages of mean "
                "(a_s - a_t)^2, a = normalize(mean_c F^2)")
