"""VID: variational information distillation (Ahn et al., CVPR 2019)."""

import keras
from keras import ops

from keras_distill.adapters.regressors import VariationalRegressor
from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import average_pool, mean_per_example, pool_factors


@keras.saving.register_keras_serializable(package="keras_distill")
class VID(DistillationLoss):
    """Maximises a variational lower bound of the teacher-student mutual information.

    For each stage pair, a Gaussian `q(t | s) = N(mu(F_s), sigma^2)` with a
    learned regressor `mu` (three 1x1 convolutions, `VariationalRegressor`)
    and a learned per-channel variance `sigma_c^2 = softplus(log_scale_c) + eps`.
    The loss is its negative log-likelihood (without the constant), per
    example:

        L = sum_pairs mean_{h,w,c} 0.5 * ((mu(F_s) - F_t)^2 / sigma_c^2 + log sigma_c^2)

    When the two maps of a pair differ in spatial size, the larger is
    average-pooled onto the smaller first (as the reference). Channels may
    differ. The loss can be negative (as `sigma^2` falls below 1); it is
    not 0 when student equals teacher.

    Args:
        teacher_taps: Teacher taps, one per pair.
        student_taps: Student taps (default: the same names).
        init_variance: Initial `sigma^2` (reference 5.0).
        eps: Variance floor (reference 1e-5).
        mid_channels: Hidden width of the regressor (default: the teacher
            tap's channels, as the reference).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch.

    Example:

    ```python
    vid = VID(["stage1", "stage2", "stage3"])
    distiller = keras_distill.Distiller(teacher, student, [vid], [1.0],
                                        student_loss_weight=1.0)
    ```

    Reference:
        Ahn, Hu, Damianou, Lawrence, Dai. "Variational Information
        Distillation for Knowledge Transfer". CVPR 2019. arXiv:1904.05835.
        Code: HobbitLong/RepDistiller `distiller_zoo/VID.py`.
    """

    def __init__(self, teacher_taps=("stage1", "stage2", "stage3"), student_taps=None,
                 init_variance=5.0, eps=1e-5, mid_channels=None, name="vid", **kwargs):
        teacher_taps = [teacher_taps] if isinstance(teacher_taps, str) else list(teacher_taps)
        student_taps = [student_taps] if isinstance(student_taps, str) else \
            list(student_taps or teacher_taps)
        if not teacher_taps or len(teacher_taps) != len(student_taps):
            raise ValueError(
                f"VID pairs teacher and student taps one to one and needs at least one "
                f"pair, got teacher taps {teacher_taps} and student taps {student_taps}.")
        if not eps > 0 or not init_variance > eps:
            raise ValueError(
                f"VID needs eps > 0 and init_variance > eps, got eps={eps!r}, "
                f"init_variance={init_variance!r}. The reference uses 5.0 and 1e-5.")
        super().__init__(name=name, **kwargs)
        self.teacher_taps, self.student_taps = tuple(teacher_taps), tuple(student_taps)
        self.init_variance = float(init_variance)
        self.eps = float(eps)
        self.mid_channels = None if mid_channels is None else int(mid_channels)
        self.regressors = None
        self.factors = None

    def build(self, teacher_shapes, student_shapes):
        self.regressors, self.factors = [], []
        for index, (t_tap, s_tap) in enumerate(zip(self.teacher_taps, self.student_taps)):
            t_shape, s_shape = tuple(teacher_shapes[t_tap]), tuple(student_shapes[s_tap])
            if len(t_shape) != len(s_shape):
                raise ValueError(
                    f"VID pair (teacher {t_tap!r} {t_shape[1:]}, student {s_tap!r} "
                    f"{s_shape[1:]}): tap features of the same rank.")
            if len(t_shape) == 4:
                t_factor, s_factor = pool_factors(
                    t_shape, s_shape, f"VID pair (teacher {t_tap!r}, student {s_tap!r})")
            else:
                t_factor = s_factor = None
            self.factors.append((t_factor, s_factor))
            regressor = self.add_adapter(VariationalRegressor(
                t_shape[-1], mid_channels=self.mid_channels, init_variance=self.init_variance,
                eps=self.eps, name=f"{self.name}_regressor{index + 1}", dtype="float32"))
            regressor.build((None,) + s_shape[1:])
            self.regressors.append(regressor)
        self.built = True

    def compute(self, teacher, student, labels, side_inputs, training=False):
        if self.regressors is None:
            raise RuntimeError(
                f"VID {self.name!r} is not built: the Distiller builds it from the taps' "
                "shapes (or call keras_distill.testing.build_term in tests).")
        total = 0.0
        for index, (t_tap, s_tap) in enumerate(zip(self.teacher_taps, self.student_taps)):
            f_t, f_s = ops.cast(teacher[t_tap], "float32"), ops.cast(student[s_tap], "float32")
            t_factor, s_factor = self.factors[index]
            if t_factor is not None:
                f_t, f_s = average_pool(f_t, t_factor), average_pool(f_s, s_factor)
            regressor = self.regressors[index]
            mean, variance = regressor(f_s), regressor.variance()
            nll = 0.5 * (ops.square(mean - f_t) / variance + ops.log(variance))
            total = total + mean_per_example(nll)
        return total

    def get_config(self):
        return {**super().get_config(), "teacher_taps": list(self.teacher_taps),
                "student_taps": list(self.student_taps), "init_variance": self.init_variance,
                "eps": self.eps, "mid_channels": self.mid_channels}
