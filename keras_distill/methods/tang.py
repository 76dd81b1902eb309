"""Recipes `tang` and `tang_<mode>`: Tang et al. 2020's teacher-target transforms."""

from __future__ import annotations

import dataclasses

from keras_distill.losses.tang import MODES, TangKD
from keras_distill.methods import registry


@dataclasses.dataclass(frozen=True)
class TangModeOptions:
    """Options of `tang_<mode>`. `temperature=None`: 1 for label smoothing (a fixed
    smoothed one-hot target at T > 1 only sharpens the student's logits T-fold), else 4;
    `top_k=None`: ceil(K / 20)."""

    temperature: float | None = None
    epsilon: float = 0.1
    top_k: int | None = None
    weight_temperature: float = 1.0
    kd_weight: float = 0.9
    ce_weight: float = 0.1

    def __post_init__(self):
        for key in ("temperature", "weight_temperature"):
            value = getattr(self, key)
            registry.check(value is None or value > 0, key, value, "a float > 0")
        registry.check(0.0 <= self.epsilon < 1.0, "epsilon", self.epsilon, "a float in [0, 1)")
        registry.check(self.top_k is None or self.top_k >= 0, "top_k", self.top_k,
                       "an integer >= 0")
        for key in ("kd_weight", "ce_weight"):
            registry.check(getattr(self, key) >= 0, key, getattr(self, key), "a float >= 0")


@dataclasses.dataclass(frozen=True)
class TangOptions(TangModeOptions):
    """Options of `tang`: those of `tang_<mode>` and the `mode`."""

    mode: str = "full"

    def __post_init__(self):
        super().__post_init__()
        registry.check_choice("mode", self.mode, MODES)


def spec(context, mode):
    options = context.options
    temperature = options.temperature
    if temperature is None:
        temperature = 1.0 if mode == "label_smoothing" else 4.0
    term = TangKD(mode=mode, temperature=temperature, epsilon=options.epsilon,
                  top_k=options.top_k, weight_temperature=options.weight_temperature)
    return registry.MethodSpec(terms=[term], weights=[options.kd_weight],
                               student_loss_weight=options.ce_weight,
                               notes=f"Tang et al. 2020, mode {mode}")


def build(context):
    return spec(context, context.options.mode)


def mode_method(mode, description):
    return registry.Method(lambda context: spec(context, mode), TangModeOptions,
                           page="tang.md", description=f"Tang et al. 2020: {description}")


METHOD = registry.Method(
    build, TangOptions, page="tang.md",
    description="Tang et al. 2020 teacher-target transform; "
                "--method_options mode=full|label_smoothing|partial|top_k|reweight")
FULL = mode_method("full", "plain KD target p (T=4), 0.9 KD + 0.1 CE")
LABEL_SMOOTHING = mode_method("label_smoothing",
                              "one-hot smoothed with eps=0.1 (T=1), 0.9 + 0.1 CE")
PARTIAL = mode_method("partial", "KD-pt: p_y kept, 1 - p_y spread uniformly (T=4)")
TOP_K = mode_method("top_k",
                    "p_y and top-k non-target p kept, rest uniform (k=ceil(K/20), T=4)")
REWEIGHT = mode_method("reweight", "CE weighted by the teacher's p_y (T_w=1), 0.9 + 0.1 CE")
