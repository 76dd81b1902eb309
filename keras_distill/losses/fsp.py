"""FSP: flow of solution procedure matrices (Yim et al., CVPR 2017)."""

import keras
from keras import ops

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import average_pool, pool_factors


def fsp_matrix(bottom, top):
    """`G_ij = mean_{h,w} bottom_hwi * top_hwj`: `(batch, C_bottom, C_top)`."""
    height, width = ops.shape(bottom)[1], ops.shape(bottom)[2]
    bottom = ops.reshape(bottom, (ops.shape(bottom)[0], height * width, ops.shape(bottom)[3]))
    top = ops.reshape(top, (ops.shape(top)[0], height * width, ops.shape(top)[3]))
    return ops.einsum("bni,bnj->bij", bottom, top) / ops.cast(height * width, bottom.dtype)


@keras.saving.register_keras_serializable(package="keras_distill")
class FSP(DistillationLoss):
    """FSP matrices between consecutive layers, matched by L2 (Yim et al., 2017).

    For consecutive taps `(l, l+1)` of each network, the "flow" (Gram)
    matrix `G^l = mean_{h,w} F^l_{hw,:}^T F^{l+1}_{hw,:}` of shape
    `(C_l, C_{l+1})`; when the two maps differ in spatial size, the larger
    is average-pooled onto the smaller first (as the reference). Per
    example:

        L = sum_l mean_{i,j} (G_s^l - G_t^l)_{ij}^2

    (the reference's mean over entries; the paper writes a sum). Student and
    teacher taps must have equal channel counts pairwise (the FSP matrices
    must have the same shape); the reference raises too. `align_channels`
    is an extension beyond the paper for pairs of different widths: a learned
    1x1 convolution (no bias; an adapter) maps each narrower or wider
    student tap to the teacher's channels before its FSP matrices are formed.

    Args:
        teacher_taps: At least two teacher taps, shallow to deep.
        student_taps: The student's (default: the same names).
        align_channels: Align student taps whose channels differ from the
            teacher's with learned 1x1 convolutions (default False: refuse
            them, as the reference).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch.

    Example:

    ```python
    fsp = FSP(["stem", "stage1", "stage2", "stage3"])
    distiller = keras_distill.Distiller(teacher, student, [fsp], [1.0],
                                        student_loss_weight=0.0)  # stage 1
    ```

    Reference:
        Yim, Joo, Bae, Kim. "A Gift from Knowledge Distillation: Fast
        Optimization, Network Minimization and Transfer Learning".
        CVPR 2017. Code: HobbitLong/RepDistiller `distiller_zoo/FSP.py`.
    """

    def __init__(self, teacher_taps=("stage1", "stage2", "stage3"), student_taps=None,
                 align_channels=False, name="fsp", **kwargs):
        teacher_taps = _taps(teacher_taps, "teacher_taps")
        student_taps = _taps(student_taps or teacher_taps, "student_taps")
        if len(teacher_taps) != len(student_taps):
            raise ValueError(
                f"FSP pairs teacher and student taps one to one, got {len(teacher_taps)} "
                f"teacher taps {teacher_taps} and {len(student_taps)} student taps "
                f"{student_taps}.")
        super().__init__(name=name, **kwargs)
        self.teacher_taps, self.student_taps = tuple(teacher_taps), tuple(student_taps)
        self.align_channels = bool(align_channels)
        self.factors = None
        self.aligners = {}

    def build(self, teacher_shapes, student_shapes):
        self.aligners = {}
        for t_tap, s_tap in zip(self.teacher_taps, self.student_taps):
            t_channels, s_channels = teacher_shapes[t_tap][-1], student_shapes[s_tap][-1]
            if t_channels != s_channels and self.align_channels:
                aligner = self.add_adapter(keras.layers.Dense(  # a 1x1 convolution
                    t_channels, use_bias=False, dtype="float32",
                    name=f"{self.name}_align_{s_tap.replace('/', '_')}"))
                aligner.build((None, s_channels))
                self.aligners[s_tap] = aligner
            elif t_channels != s_channels:
                raise ValueError(
                    f"FSP {self.name!r}: teacher tap {t_tap!r} has {t_channels} channels but "
                    f"student tap {s_tap!r} has {s_channels}; FSP matrices are compared entry "
                    "by entry, so paired taps need equal channels. Pick taps of equal width "
                    "(e.g. resnet32x4 -> resnet8x4; in the recipe: --method_options "
                    "teacher_taps=a+b,student_taps=c+d), pass align_channels=True (learned "
                    "1x1 convolutions, beyond the paper), or use FitNet / VID.")
        self.factors = {}
        for role, taps, shapes in (("teacher", self.teacher_taps, teacher_shapes),
                                   ("student", self.student_taps, student_shapes)):
            self.factors[role] = [
                pool_factors(shapes[a], shapes[b], f"FSP {role} taps {a!r} -> {b!r}")
                for a, b in zip(taps[:-1], taps[1:])]
        self.built = True

    def _matrices(self, outputs, taps, role):
        matrices = []
        for index, (a, b) in enumerate(zip(taps[:-1], taps[1:])):
            bottom, top = ops.cast(outputs[a], "float32"), ops.cast(outputs[b], "float32")
            if role == "student":
                bottom = self.aligners[a](bottom) if a in self.aligners else bottom
                top = self.aligners[b](top) if b in self.aligners else top
            if self.factors is not None:
                bottom = average_pool(bottom, self.factors[role][index][0])
                top = average_pool(top, self.factors[role][index][1])
            matrices.append(fsp_matrix(bottom, top))
        return matrices

    def compute(self, teacher, student, labels, side_inputs, training=False):
        total = 0.0
        for g_t, g_s in zip(self._matrices(teacher, self.teacher_taps, "teacher"),
                            self._matrices(student, self.student_taps, "student")):
            total = total + ops.mean(ops.square(g_s - g_t), axis=(1, 2))
        return total

    def get_config(self):
        return {**super().get_config(), "teacher_taps": list(self.teacher_taps),
                "student_taps": list(self.student_taps), "align_channels": self.align_channels}


def _taps(taps, what):
    if isinstance(taps, str):
        taps = [taps]
    taps = list(taps or [])
    if len(taps) < 2 or not all(isinstance(t, str) and t for t in taps):
        raise ValueError(
            f"FSP {what} must list at least two layer names (FSP relates consecutive "
            f"layers), got {taps!r}.")
    return taps
