"""Recipes `kd` (Hinton et al. 2015) and `scratch` (the student on labels only)."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.kd import KD
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class KDOptions:
    """Options of `kd`: `T^2 KL(p_t || p_s)` at `temperature`, weighted against CE."""

    temperature: float = 4.0
    kd_weight: float = 0.9
    ce_weight: float = 0.1

    def __post_init__(self):
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        for key in ("kd_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def build(context):
    options = context.options
    return registry.MethodSpec(terms=[KD(temperature=options.temperature)],
                               weights=[options.kd_weight],
                               student_loss_weight=options.ce_weight)


def build_scratch(context):
    return registry.MethodSpec(terms=[], weights=[], student_loss_weight=1.0)


METHOD = registry.Method(
    build, KDOptions, page="kd.md",
    description="Hinton et al. 2015: T^2 KL(p_t || p_s), T=4, 0.1 CE + 0.9 KD")
SCRATCH = registry.Method(
    build_scratch, page="kd.md", needs_teacher=False,
    description="The student on labels only (the baseline)")
