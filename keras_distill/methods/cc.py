"""Recipe `cc`: Peng et al. 2019, correlation congruence of the batch's embeddings."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.cc import CC
from keras_distill.losses.kd import KD
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class CCOptions:
    """Options of `cc`. `embed_dim=None`: no projection; `kd_weight > 0` adds KD at
    `temperature`."""

    teacher_tap: str = "embedding"
    student_tap: str = "embedding"
    gamma: float = 0.4
    order: int = 2
    embed_dim: int | None = None
    cc_weight: float = 100.0
    kd_weight: float = 0.0
    temperature: float = 4.0
    ce_weight: float = 1.0

    def __post_init__(self):
        registry.check(self.gamma > 0, "gamma", self.gamma, "a float > 0")
        registry.check(self.order >= 0, "order", self.order, "an integer >= 0")
        registry.check(self.embed_dim is None or self.embed_dim >= 1, "embed_dim",
                       self.embed_dim, "an integer >= 1 or none")
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        for key in ("cc_weight", "kd_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def build(context):
    options = context.options
    terms = [CC(teacher_tap=options.teacher_tap, student_tap=options.student_tap,
                gamma=options.gamma, order=options.order, embed_dim=options.embed_dim)]
    weights = [options.cc_weight]
    if options.kd_weight > 0:
        terms.append(KD(temperature=options.temperature))
        weights.append(options.kd_weight)
    return registry.MethodSpec(terms=terms, weights=weights,
                               student_loss_weight=options.ce_weight)


METHOD = registry.Method(
    build, CCOptions, page="cc.md",
    description="Peng et al. 2019: correlation congruence, Taylor (P=2) Gaussian RBF (gamma "
                "0.4) correlations of the batch's embeddings; CE 1 + CC 100")
