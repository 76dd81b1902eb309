"""Recipe `rkd`: Park et al. 2019, distance and angle relations of the batch's embeddings."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.rkd import RKD
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class RKDOptions:
    """Options of `rkd`: the taps, the relations' weights inside RKD, RKD's and CE's."""

    teacher_tap: str = "embedding"
    student_tap: str = "embedding"
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    rkd_weight: float = 1.0
    ce_weight: float = 1.0

    def __post_init__(self):
        for key in ("distance_weight", "angle_weight", "rkd_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def build(context):
    options = context.options
    term = RKD(teacher_tap=options.teacher_tap, student_tap=options.student_tap,
               distance_weight=options.distance_weight, angle_weight=options.angle_weight)
    return registry.MethodSpec(terms=[term], weights=[options.rkd_weight],
                               student_loss_weight=options.ce_weight)


METHOD = registry.Method(
    build, RKDOptions, page="rkd.md",
    description="Park et al. 2019: distance (25) + angle (50) relations of the batch's "
                "embeddings; CE 1 + RKD 1")
