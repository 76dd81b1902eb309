"""Recipe `dpk`: Zong, Qiu et al. ICLR 2023, CE + KD + DPK on the last stages."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.dpk import DPK
from keras_distill.losses.kd import KD
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class DPKOptions:
    """Options of `dpk`. Taps (joined by '+') default to the last `stages` feature taps;
    `width=0`: the teacher's width."""

    stages: int = 2
    teacher_taps: tuple[str, ...] | None = None
    student_taps: tuple[str, ...] | None = None
    patch_size: int = 4
    width: int = 0
    depth: int = 1
    momentum: float = 0.9
    initial_ratio: float = 0.5
    cka_features: str = "encoded"
    temperature: float = 4.0
    kd_weight: float = 1.0
    dpk_weight: float = 1.0
    ce_weight: float = 1.0

    def __post_init__(self):
        for key in ("stages", "patch_size", "depth"):
            registry.check(getattr(self, key) >= 1, key, getattr(self, key), "an integer >= 1")
        registry.check(self.width >= 0, "width", self.width, "an integer >= 0")
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        for key in ("kd_weight", "dpk_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def _taps(option, value, available, stages):
    """The taps given, or the last `stages` of `available`."""
    taps = list(value) if value is not None else list(available[-stages:])
    if not taps:
        raise ValueError(
            f"DPK needs feature-map taps: the context lists no stage taps, so pass "
            f"--method_options {option}=stage2+stage3 (layer names joined by '+').")
    return taps


def build(context):
    options = context.options
    teacher_taps = _taps("teacher_taps", options.teacher_taps, list(context.teacher_taps),
                         options.stages)
    student_taps = _taps("student_taps", options.student_taps,
                         list(context.student_taps) or teacher_taps, options.stages)
    term = DPK(teacher_taps=teacher_taps, student_taps=student_taps,
               patch_size=options.patch_size, width=options.width or None,
               depth=options.depth, momentum=options.momentum,
               initial_ratio=options.initial_ratio, cka_features=options.cka_features,
               seed=context.seed)
    return registry.MethodSpec(
        terms=[KD(temperature=options.temperature), term],
        weights=[options.kd_weight, options.dpk_weight],
        student_loss_weight=options.ce_weight,
        notes="DPK adapters (aligners, encoders, decoder) are training-only; the ratio "
              "per stage is logged as dpk_ratio_<tap>.")


METHOD = registry.Method(
    build, DPKOptions, page="dpk.md",
    description="Zong, Qiu et al. ICLR 2023: CE + KD + decoder MSE on teacher/student token "
                "mixes (last 2 stages, CKA ratio)")
