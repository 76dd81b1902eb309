"""AT: attention transfer (Zagoruyko & Komodakis, ICLR 2017)."""

import keras
from keras import ops

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import attention_map, average_pool, pool_factors


@keras.saving.register_keras_serializable(package="keras_distill")
class AT(DistillationLoss):
    """Attention transfer between spatial attention maps (Zagoruyko & Komodakis, 2017).

    For each stage pair `j` (teacher tap, student tap), per example:

        a(F) = v / ||v||_2,  v = vec(mean_c |F|^p)            (p = 2)
        L = sum_j mean_{h,w} (a(F_s^j) - a(F_t^j))^2

    as in the reference code (RepDistiller / mdistiller `at_loss`; the
    paper writes an unsquared norm, the code and its beta = 1000 use this
    mean of squares). When the two maps of a pair differ in spatial size,
    the larger is average-pooled onto the smaller first (the reference's
    `adaptive_avg_pool2d`); sizes must be integer multiples. Channel counts
    may differ: the map averages over channels.

    Args:
        teacher_taps: Teacher stage taps, one per pair.
        student_taps: Student stage taps (default: the same names).
        p: Power of the attention map (default 2).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch.

    Example:

    ```python
    at = AT(teacher_taps=["stage1", "stage2", "stage3"])
    distiller = keras_distill.Distiller(teacher, student, [at], [1000.0],
                                        student_loss_weight=1.0)
    ```

    Reference:
        Zagoruyko, Komodakis. "Paying More Attention to Attention: Improving
        the Performance of Convolutional Neural Networks via Attention
        Transfer". ICLR 2017. arXiv:1612.03928.
    """

    def __init__(self, teacher_taps=("stage1", "stage2", "stage3"), student_taps=None, p=2.0,
                 name="at", **kwargs):
        teacher_taps = _tap_list(teacher_taps, "AT teacher_taps")
        student_taps = _tap_list(student_taps or teacher_taps, "AT student_taps")
        if len(teacher_taps) != len(student_taps):
            raise ValueError(
                f"AT pairs teacher and student taps one to one, got {len(teacher_taps)} "
                f"teacher taps {teacher_taps} and {len(student_taps)} student taps "
                f"{student_taps}.")
        if not p > 0:
            raise ValueError(f"AT p must be > 0, got {p!r}. The paper uses p = 2.")
        super().__init__(name=name, **kwargs)
        self.teacher_taps, self.student_taps = tuple(teacher_taps), tuple(student_taps)
        self.p = float(p)
        self.factors = None

    def build(self, teacher_shapes, student_shapes):
        self.factors = [
            pool_factors(teacher_shapes[t], student_shapes[s],
                         f"AT pair (teacher {t!r}, student {s!r})")
            for t, s in zip(self.teacher_taps, self.student_taps)]
        self.built = True

    def compute(self, teacher, student, labels, side_inputs, training=False):
        total = 0.0
        for index, (t_tap, s_tap) in enumerate(zip(self.teacher_taps, self.student_taps)):
            f_t, f_s = ops.cast(teacher[t_tap], "float32"), ops.cast(student[s_tap], "float32")
            if self.factors is not None:
                f_t = average_pool(f_t, self.factors[index][0])
                f_s = average_pool(f_s, self.factors[index][1])
            diff = attention_map(f_s, self.p) - attention_map(f_t, self.p)
            total = total + ops.mean(ops.square(diff), axis=-1)
        return total

    def get_config(self):
        return {**super().get_config(), "teacher_taps": list(self.teacher_taps),
                "student_taps": list(self.student_taps), "p": self.p}


def _tap_list(taps, what):
    if isinstance(taps, str):
        taps = [taps]
    taps = list(taps or [])
    if not taps or not all(isinstance(t, str) and t for t in taps):
        raise ValueError(f"{what} must be a non-empty list of layer names, got {taps!r}.")
    return taps
