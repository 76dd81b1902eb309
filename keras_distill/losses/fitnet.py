"""FitNet: hint regression through a learned adapter (Romero et al., ICLR 2015)."""

import keras
from keras import ops

from keras_distill.adapters.regressors import HintRegressor
from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import mean_per_example


@keras.saving.register_keras_serializable(package="keras_distill")
class FitNet(DistillationLoss):
    """Hint regression: MSE between a regressed student feature and the teacher's.

    Per example, with `r` a learned regressor (`HintRegressor`: convolution
    + BatchNorm + ReLU, RepDistiller's `ConvReg`) mapping the student's
    guided layer onto the shape of the teacher's hint layer:

        L = mean_{h,w,c} (r(F_s) - F_t)^2

    The teacher feature is the Distiller's (stop-gradient) output; the
    regressor is an adapter trained with the student and never exported.
    Student and teacher maps may differ in channels and in spatial size
    (equal, twice, half, or larger: see `HintRegressor`).

    Args:
        teacher_tap: The teacher's hint layer (default "stage2", the
            reference's `hint_layer=2`).
        student_tap: The student's guided layer (default: `teacher_tap`).
        use_relu: End the regressor with ReLU (reference: yes).
        batch_norm: BatchNorm in the regressor (reference: yes).
        synchronized_batch_norm: Regressor BatchNorm statistics over all
            replicas, so N replicas match 1 (default True).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher, student, [FitNet("stage2")], [100.0], student_loss_weight=1.0)
    ```

    Reference:
        Romero, Ballas, Kahou, Chassang, Gatta, Bengio. "FitNets: Hints for
        Thin Deep Nets". ICLR 2015. arXiv:1412.6550.
    """

    def __init__(self, teacher_tap="stage2", student_tap=None, use_relu=True, batch_norm=True,
                 synchronized_batch_norm=True, name="fitnet", **kwargs):
        for label, tap in (("teacher_tap", teacher_tap), ("student_tap", student_tap)):
            if tap is not None and (not isinstance(tap, str) or not tap):
                raise ValueError(f"FitNet {label} must be a layer name, got {tap!r}.")
        if teacher_tap is None:
            raise ValueError("FitNet teacher_tap must be a layer name, got None.")
        student_tap = student_tap or teacher_tap
        super().__init__(name=name, **kwargs)
        self.teacher_tap, self.student_tap = teacher_tap, student_tap
        self.use_relu = bool(use_relu)
        self.batch_norm = bool(batch_norm)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.regressor = None

    @property
    def teacher_taps(self):
        return (self.teacher_tap,)

    @property
    def student_taps(self):
        return (self.student_tap,)

    def build(self, teacher_shapes, student_shapes):
        teacher_shape = tuple(teacher_shapes[self.teacher_tap])
        student_shape = tuple(student_shapes[self.student_tap])
        self.regressor = self.add_adapter(HintRegressor(
            teacher_shape[1:], use_relu=self.use_relu, batch_norm=self.batch_norm,
            synchronized_batch_norm=self.synchronized_batch_norm,
            name=f"{self.name}_regressor", dtype="float32"))
        try:
            self.regressor.build((None,) + student_shape[1:])
        except ValueError as error:
            raise ValueError(
                f"FitNet {self.name!r} (teacher {self.teacher_tap!r} {teacher_shape[1:]}, "
                f"student {self.student_tap!r} {student_shape[1:]}): {error}") from error
        self.built = True

    def compute(self, teacher, student, labels, side_inputs, training=False):
        if self.regressor is None:
            raise RuntimeError(
                f"FitNet {self.name!r} is not built: the Distiller builds it from the taps' "
                "shapes (or call keras_distill.testing.build_term in tests).")
        f_s = self.regressor(ops.cast(student[self.student_tap], "float32"),
                             training=training)
        diff = f_s - ops.cast(teacher[self.teacher_tap], "float32")
        return mean_per_example(ops.square(diff))

    def get_config(self):
        config = super().get_config()
        config.update({"teacher_tap": self.teacher_tap, "student_tap": self.student_tap,
                       "use_relu": self.use_relu, "batch_norm": self.batch_norm,
                       "synchronized_batch_norm": self.synchronized_batch_norm})
        return config
