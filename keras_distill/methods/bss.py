"""Recipe `bss`: Heo et al. 2019, CE + KD + KD on boundary-supporting samples."""

from __future__ import annotations

import dataclasses

from keras_distill.callbacks.variable_schedule import VariableSchedule
from keras_distill.losses.bss import BSS
from keras_distill.losses.kd import KD
from keras_distill.methods import registry
from keras_distill.views import BoundarySupportingSamples


@dataclasses.dataclass(frozen=True)
class BSSOptions:
    """Options of `bss`. `clip_min`/`clip_max`: default no clipping, giving one clips to
    `[clip_min or 0, clip_max or 1]`; `kd_weight`/`bss_weight`: default the reference's
    per-epoch schedule, giving either makes both constant."""

    temperature: float = 3.0
    attack_steps: int = 10
    step_size: float = 0.3
    sample_fraction: float = 0.25
    target_class: str = "sample"
    clip_min: float | None = None
    clip_max: float | None = None
    ce_weight: float = 1.0
    kd_weight: float | None = None
    bss_weight: float | None = None

    def __post_init__(self):
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        registry.check(self.attack_steps >= 0, "attack_steps", self.attack_steps,
                       "an integer >= 0")
        registry.check(0.0 < self.sample_fraction <= 1.0, "sample_fraction",
                       self.sample_fraction, "a float in (0, 1]")
        for key in ("ce_weight", "kd_weight", "bss_weight"):
            value = getattr(self, key)
            registry.check(value is None or value >= 0, key, value, "a float >= 0")


def reference_weights(epoch, epochs, temperature):
    """The reference's per-epoch weights `(w_kd, w_bss)` in the toolkit's `T^2` units.

    Reference (0-based `epoch`, `e = epoch + 1`, `E = epochs`), on soft
    cross-entropies without `T^2`: `ratio = 1 + max(3 (1 - e / E), 0)` (4 -> 1)
    and `attack = max(2 (1 - 4 e / (3 E)), 0)` (2 -> 0 at 75% of training).
    KD here carries `T^2`, so both are divided by `T^2` (same gradients).
    """
    progress = (epoch + 1) / max(epochs, 1)
    ratio = 1.0 + max(3.0 * (1.0 - progress), 0.0)
    attack = max(2.0 * (1.0 - 4.0 / 3.0 * progress), 0.0)
    return ratio / temperature ** 2, attack / temperature ** 2


def build(context):
    options, temperature, steps = context.options, context.options.temperature, \
        context.options.attack_steps
    clip = None
    if options.clip_min is not None or options.clip_max is not None:
        clip = (0.0 if options.clip_min is None else options.clip_min,
                1.0 if options.clip_max is None else options.clip_max)
    view = BoundarySupportingSamples(
        num_steps=steps, step_size=options.step_size, sample_fraction=options.sample_fraction,
        target_class=options.target_class, clip_range=clip, seed=context.seed)
    terms = [KD(temperature=temperature, name="kd"),
             BSS(temperature=temperature, input_view=view, name="bss")]
    callbacks = []
    if options.kd_weight is not None or options.bss_weight is not None:
        kd_weight, bss_weight = reference_weights(0, context.epochs, temperature)
        weights = [kd_weight if options.kd_weight is None else options.kd_weight,
                   bss_weight if options.bss_weight is None else options.bss_weight]
    else:
        def schedule(index):
            return lambda epoch: reference_weights(epoch, context.epochs, temperature)[index]
        weights = [schedule(0)(0), schedule(1)(0)]
        callbacks = [
            VariableSchedule("kd", schedule(0)), VariableSchedule("bss", schedule(1)),
            # No attack once its weight is 0 (the reference skips it too).
            VariableSchedule(view.max_steps,
                             lambda epoch: steps if schedule(1)(epoch) > 0 else 0)]
    return registry.MethodSpec(
        terms=terms, weights=weights, student_loss_weight=options.ce_weight,
        callbacks=callbacks,
        notes="Each step attacks the teacher (up to attack_steps forward+backward passes "
              "on sample_fraction of the batch).")


METHOD = registry.Method(
    build, BSSOptions, page="bss.md",
    description="Heo et al. 2019: CE + KD + KD on adversarial samples near the teacher's "
                "boundary, T=3, reference weight schedule")
