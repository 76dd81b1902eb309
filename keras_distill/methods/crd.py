"""Recipe `crd`: Tian et al. 2020, contrastive representation distillation (+ KD optionally)."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.crd import CRD
from keras_distill.losses.kd import KD
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class CRDOptions:
    """Options of `crd`: the memory bank's NCE (`feature_dim`, `num_negatives`,
    `temperature`, `momentum`); `kd_weight > 0` adds KD at `kd_temperature` (CRD+KD)."""

    feature_dim: int = 128
    num_negatives: int = 16384
    temperature: float = 0.07
    momentum: float = 0.5
    teacher_tap: str = "embedding"
    student_tap: str = "embedding"
    crd_weight: float = 0.8
    kd_weight: float = 0.0
    kd_temperature: float = 4.0
    ce_weight: float = 1.0

    def __post_init__(self):
        for key in ("feature_dim", "num_negatives"):
            registry.check(getattr(self, key) >= 1, key, getattr(self, key), "an integer >= 1")
        for key in ("temperature", "kd_temperature"):
            registry.check(getattr(self, key) > 0, key, getattr(self, key), "a float > 0")
        registry.check(0.0 <= self.momentum <= 1.0, "momentum", self.momentum,
                       "a float in [0, 1]")
        for key in ("crd_weight", "kd_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def build(context):
    options = context.options
    if context.num_train_examples < 1:
        raise ValueError(
            "The crd method needs MethodContext.num_train_examples (the memory-bank size), "
            f"got {context.num_train_examples!r}.")
    terms = [CRD(num_examples=context.num_train_examples, feature_dim=options.feature_dim,
                 num_negatives=options.num_negatives, temperature=options.temperature,
                 momentum=options.momentum, teacher_tap=options.teacher_tap,
                 student_tap=options.student_tap, seed=context.seed)]
    weights = [options.crd_weight]
    if options.kd_weight > 0:  # CRD+KD: the reference's `-a 1`
        terms.append(KD(temperature=options.kd_temperature))
        weights.append(options.kd_weight)
    return registry.MethodSpec(terms=terms, weights=weights, side_inputs=("index",),
                               student_loss_weight=options.ce_weight)


METHOD = registry.Method(
    build, CRDOptions, page="crd.md",
    description="Tian et al. 2020: contrastive representation distillation (memory banks, "
                "NCE, K=16384, tau=0.07, m=0.5, dim 128); CE 1 + CRD 0.8")
