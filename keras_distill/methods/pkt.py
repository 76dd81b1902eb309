"""Recipe `pkt`: Passalis & Tefas 2018, probabilistic knowledge transfer of the embeddings."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.pkt import PKT
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class PKTOptions:
    """Options of `pkt`: the taps, PKT's and CE's weights."""

    teacher_tap: str = "embedding"
    student_tap: str = "embedding"
    pkt_weight: float = 30000.0
    ce_weight: float = 1.0

    def __post_init__(self):
        for key in ("pkt_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


def build(context):
    options = context.options
    return registry.MethodSpec(
        terms=[PKT(teacher_tap=options.teacher_tap, student_tap=options.student_tap)],
        weights=[options.pkt_weight], student_loss_weight=options.ce_weight)


METHOD = registry.Method(
    build, PKTOptions, page="pkt.md",
    description="Passalis & Tefas 2018: KL between cosine-kernel conditional distributions of "
                "the batch's embeddings; CE 1 + PKT 30000")
