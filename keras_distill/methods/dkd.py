"""Recipe `dkd`: Zhao et al. 2022, CE + warm-up * (alpha TCKD + beta NCKD)."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.dkd import DKD
from keras_distill.methods import registry
from keras_distill.schedules import LinearWarmup

# Pair-specific beta of the reference configs (mdistiller configs/cifar100/dkd/);
# every other pair uses 8.0.
REFERENCE_BETA = {
    ("resnet56", "resnet20"): 2.0,
    ("resnet110", "resnet32"): 2.0,
    ("vgg13", "vgg8"): 6.0,
    ("vgg13", "mobilenetv2"): 6.0,
    ("wrn_40_2", "wrn_16_2"): 6.0,
    ("wrn_40_2", "wrn_40_1"): 6.0,
}


@dataclasses.dataclass(frozen=True)
class DKDOptions:
    """Options of `dkd`. `beta=None`: the pair table (else 8); `warmup_epochs=None`:
    the reference's 20 of 240 epochs, scaled down for short runs."""

    alpha: float = 1.0
    beta: float | None = None
    temperature: float = 4.0
    warmup_epochs: float | None = None
    dkd_weight: float = 1.0
    ce_weight: float = 1.0

    def __post_init__(self):
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        for key in ("alpha", "beta", "warmup_epochs", "dkd_weight", "ce_weight"):
            value = getattr(self, key)
            registry.check(value is None or value >= 0, key, value, "a float >= 0")


def warmup_steps(context, reference_epochs=20.0, reference_total=240.0):
    """Warm-up length in steps: `min(20, epochs * 20 / 240)` epochs, unless `warmup_epochs`."""
    epochs = context.options.warmup_epochs
    if epochs is None:
        epochs = float(min(reference_epochs, context.epochs * reference_epochs / reference_total))
    return int(round(max(0.0, epochs) * context.steps_per_epoch))


def build(context):
    options = context.options
    pair = (getattr(context.teacher, "name", None), getattr(context.student, "name", None))
    beta = options.beta if options.beta is not None else REFERENCE_BETA.get(pair, 8.0)
    term = DKD(alpha=options.alpha, beta=beta, temperature=options.temperature)
    steps = warmup_steps(context)
    return registry.MethodSpec(
        terms=[term], weights=[LinearWarmup(options.dkd_weight, warmup_steps=steps)],
        student_loss_weight=options.ce_weight,
        notes=f"DKD alpha={term.alpha} beta={term.beta} T={term.temperature}, "
              f"linear warm-up over {steps} steps")


METHOD = registry.Method(
    build, DKDOptions, page="dkd.md",
    description="Zhao et al. 2022: CE + warm-up * (alpha TCKD + beta NCKD), alpha=1, beta=8 "
                "(pair table), T=4")
