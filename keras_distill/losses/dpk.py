"""DPK: Zong, Qiu et al. ICLR 2023, dynamic prior knowledge (teacher tokens mixed in)."""

import keras
from keras import ops

from keras_distill.adapters.dpk import PriorKnowledgeCodec
from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import linear_cka

_CKA_FEATURES = ("encoded", "raw")


def resolve_patch_size(patch_size, height, width):
    """The largest `p <= patch_size` dividing both sides and leaving >= 2x2 tokens (min 1)."""
    for p in range(int(patch_size), 0, -1):
        if height % p == 0 and width % p == 0 and height // p >= 2 and width // p >= 2:
            return p
    return 1


@keras.saving.register_keras_serializable(package="keras_distill")
class DPK(DistillationLoss):
    """Dynamic prior knowledge: decode a student/teacher token mix into the teacher's map.

    Per distilled stage `k` (student map `S`, teacher map `T`, same height
    and width): aligners and encoders (`PriorKnowledgeCodec`) turn each map
    into a grid of tokens, one per `p x p` patch; the hybrid grid takes the
    teacher's token where `u >= r_k` (`u ~ U[0, 1)` per token, one draw
    shared by the batch and by all replicas) and the student's elsewhere, so
    a share `1 - r_k` of it is teacher "prior knowledge"; a decoder maps it
    back to the teacher's shape and

        L = sum_k mean_{h,w,c} (decoder(hybrid_k) - stop_gradient(T_k))^2

    per example. In each train step, before the mix,

        r_k <- m * r_k + (1 - m) * CKA(student tokens, teacher tokens)

    with linear CKA on the global batch (gathered across replicas), without
    gradient: a large gap (low CKA) gives more teacher tokens, and the share
    falls as the student catches up. `r_k` is a state variable (checkpointed,
    logged as `<term>_ratio_<tap>`); evaluation reads it without updating.

    Args:
        teacher_taps: Teacher feature-map taps, one per stage.
        student_taps: Matching student taps (default: the same names).
        patch_size: Patch side `p` (an int: per stage the largest divisor of
            the map's sides that is `<= p` and leaves at least 2x2 tokens,
            so 4 on 16x16 and 8x8 maps, 1 on 2x2; or a list, one exact `p`
            per stage).
        width: Token width (default: the student's channels at that stage).
        depth: Residual conv blocks per encoder and in the decoder.
        momentum: `m`; 1.0 keeps the ratio fixed (static prior knowledge).
        initial_ratio: `r_0`.
        cka_features: `"encoded"` (the tokens, as the reference code) or
            `"raw"` (the tapped maps themselves).
        seed: Seed of the mask stream (stage `k` uses `seed + k`).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher, student,
        [KD(temperature=4.0), DPK(teacher_taps=("stage2", "stage3"))],
        distillation_loss_weights=[1.0, 1.0], student_loss_weight=1.0)
    ```

    Reference:
        Zong, Qiu, Ma, Yang, Liu, Hou, Yi, Ouyang. "Better Teacher Better
        Student: Dynamic Prior Knowledge for Knowledge Distillation". ICLR
        2023. The official repository (github.com/Cuibaby/DPK) holds no code;
        the architecture details follow the public re-implementation
        `DynamicFeatureDistillation` in github.com/shaoshitong/TST
        (`losses/DFD.py`, `SDAKD_FOR_BASELINE/losses/DFD.py`).
    """

    def __init__(self, teacher_taps=("stage2", "stage3"), student_taps=None, patch_size=4,
                 width=None, depth=1, momentum=0.9, initial_ratio=0.5, cka_features="encoded",
                 seed=None, name="dpk", **kwargs):
        teacher_taps = (teacher_taps,) if isinstance(teacher_taps, str) else tuple(teacher_taps)
        student_taps = teacher_taps if student_taps is None else (
            (student_taps,) if isinstance(student_taps, str) else tuple(student_taps))
        super().__init__(name=name, **kwargs)
        self.teacher_taps, self.student_taps = teacher_taps, student_taps
        if not teacher_taps or len(teacher_taps) != len(student_taps):
            raise ValueError(
                f"DPK needs one student tap per teacher tap, got teacher_taps={teacher_taps} "
                f"and student_taps={student_taps}.")
        if len(set(teacher_taps)) != len(teacher_taps):
            raise ValueError(f"DPK teacher_taps must be distinct, got {teacher_taps}.")
        sizes = list(patch_size) if isinstance(patch_size, (list, tuple)) else [patch_size]
        if any(int(p) != p or p < 1 for p in sizes) or (
                isinstance(patch_size, (list, tuple)) and len(sizes) != len(teacher_taps)):
            raise ValueError(
                f"DPK patch_size must be a positive int or one per stage "
                f"({len(teacher_taps)}), got {patch_size!r}.")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"DPK momentum must be in [0, 1], got {momentum!r}.")
        if not 0.0 <= initial_ratio <= 1.0:
            raise ValueError(
                f"DPK initial_ratio must be in [0, 1] (the expected student share of "
                f"tokens), got {initial_ratio!r}.")
        if cka_features not in _CKA_FEATURES:
            raise ValueError(
                f"DPK cka_features must be one of {_CKA_FEATURES}, got {cka_features!r}.")
        if width is not None and int(width) < 1 or int(depth) < 0:
            raise ValueError(f"DPK width must be >= 1 and depth >= 0, got {width}, {depth}.")
        self.patch_size = patch_size if isinstance(patch_size, int) else [int(p) for p in sizes]
        self.width = None if width is None else int(width)
        self.depth, self.momentum = int(depth), float(momentum)
        self.initial_ratio, self.cka_features, self.seed = float(initial_ratio), cka_features, seed
        self.codecs, self.ratios = [], []

    def build(self, teacher_shapes, student_shapes):
        for stage, (t_tap, s_tap) in enumerate(zip(self.teacher_taps, self.student_taps)):
            t_shape, s_shape = tuple(teacher_shapes[t_tap]), tuple(student_shapes[s_tap])
            if len(t_shape) != 4 or len(s_shape) != 4:
                raise ValueError(
                    f"DPK reads feature maps (batch, height, width, channels); teacher tap "
                    f"{t_tap!r} has shape {t_shape} and student tap {s_tap!r} {s_shape}. "
                    "Pick convolutional stage taps such as 'stage2', 'stage3'.")
            if t_shape[1:3] != s_shape[1:3] or None in t_shape[1:3]:
                raise ValueError(
                    f"DPK mixes teacher and student tokens on one grid, so teacher tap "
                    f"{t_tap!r} ({t_shape[1]}x{t_shape[2]}) and student tap {s_tap!r} "
                    f"({s_shape[1]}x{s_shape[2]}) need the same known height and width. "
                    "Pick stages of equal resolution.")
            height, width = t_shape[1], t_shape[2]
            if isinstance(self.patch_size, int):
                patch = resolve_patch_size(self.patch_size, height, width)
            else:
                patch = self.patch_size[stage]
                if height % patch or width % patch:
                    raise ValueError(
                        f"DPK patch_size {patch} does not divide the {height}x{width} maps "
                        f"of tap {t_tap!r}; pick a divisor of both sides.")
            codec = self.add_adapter(PriorKnowledgeCodec(
                self.width or s_shape[-1], patch, t_shape[-1], depth=self.depth,
                seed=None if self.seed is None else self.seed + stage,
                name=f"{self.name}_{t_tap}_codec"))
            codec.build(s_shape, t_shape)
            self.codecs.append(codec)
            self.ratios.append(self.add_state_variable(f"ratio_{t_tap}", self.initial_ratio))
        self.built = True

    def extra_metrics(self):
        return {f"ratio_{tap}": ratio for tap, ratio in zip(self.teacher_taps, self.ratios)}

    def compute(self, teacher, student, labels, side_inputs, training=False):
        total = 0.0
        stages = zip(self.teacher_taps, self.student_taps, self.codecs, self.ratios)
        for t_tap, s_tap, codec, ratio in stages:
            target = ops.stop_gradient(teacher[t_tap])
            student_tokens, teacher_tokens = codec.encode(student[s_tap], target)
            value = ops.convert_to_tensor(ratio)
            if training:
                pair = ((student_tokens, teacher_tokens) if self.cka_features == "encoded"
                        else (student[s_tap], target))
                similarity = linear_cka(*map(ops.stop_gradient, pair), across_replicas=True)
                value = self.momentum * value + (1.0 - self.momentum) * similarity
                ratio.assign(value)
            decoded = ops.cast(codec.decode(codec.mix(student_tokens, teacher_tokens, value)),
                               "float32")
            total = total + ops.mean(ops.square(decoded - target), axis=(1, 2, 3))
        return total

    def get_config(self):
        return {**super().get_config(), "teacher_taps": list(self.teacher_taps),
                "student_taps": list(self.student_taps), "patch_size": self.patch_size,
                "width": self.width, "depth": self.depth, "momentum": self.momentum,
                "initial_ratio": self.initial_ratio, "cka_features": self.cka_features,
                "seed": self.seed}
