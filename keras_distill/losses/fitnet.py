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


from keras_distill import methods  # noqa: E402
from keras_distill.losses.kd import KD  # noqa: E402


def two_phase_weights(phase_one, phase_two, switch_epoch):
    """Weight variables holding `phase_one` values until `switch_epoch`, then `phase_two`.

    Args:
        phase_one: Dict name -> weight during epochs `[0, switch_epoch)`.
        phase_two: Dict name -> weight from `switch_epoch` on (same names).
        switch_epoch: First epoch (0-based) of phase two.

    Returns:
        `(variables, callbacks)`: dict name -> `keras.Variable` (pass them as
        the Distiller's weights) and the `VariableSchedule`s that switch them.
    """
    from keras_distill.callbacks.variable_schedule import VariableSchedule  # no import cycle

    variables, callbacks = {}, []
    for name, first in phase_one.items():
        second = float(phase_two[name])
        variables[name] = keras.Variable(float(first), trainable=False, dtype="float32",
                                         name=f"{name}_phase_weight")
        callbacks.append(VariableSchedule(
            variables[name],
            lambda epoch, a=float(first), b=second: a if epoch < switch_epoch else b))
    return variables, callbacks


def _hint_taps(context):
    """The middle stage (reference `hint_layer=2`: "stage2" of a 3- or 4-stage zoo model)."""
    def middle(taps):
        taps = list(taps)
        return taps[(len(taps) - 1) // 2] if taps else "stage2"
    teacher_tap = context.option("teacher_tap", middle(context.teacher_taps))
    return teacher_tap, context.option("student_tap", middle(context.student_taps))


@methods.register("fitnet", description="Romero et al. 2015: CE + 100 * MSE(ConvReg(F_s), F_t) "
                  "at the middle stage (RepDistiller: -r 1 -a 0 -b 100)")
def fitnet_method(context):
    teacher_tap, student_tap = _hint_taps(context)
    return methods.MethodSpec(
        terms=[FitNet(teacher_tap, student_tap)],
        weights=[context.option("hint_weight", 100.0)],
        student_loss_weight=context.option("ce_weight", 1.0))


@methods.register("fitnet_two_stage", description="FitNets' two stages: hint-only training "
                  "(first init_epochs), then KD (0.1 CE + 0.9 KD, T=4)")
def fitnet_two_stage_method(context):
    teacher_tap, student_tap = _hint_taps(context)
    default_init = min(30, max(1, context.epochs // 8))  # RepDistiller: 30 init epochs
    init_epochs = context.option("init_epochs", default_init)
    variables, callbacks = two_phase_weights(
        phase_one={"fitnet": context.option("hint_weight", 100.0), "kd": 0.0, "ce": 0.0},
        phase_two={"fitnet": 0.0, "kd": context.option("kd_weight", 0.9),
                   "ce": context.option("ce_weight", 0.1)},
        switch_epoch=init_epochs)
    return methods.MethodSpec(
        terms=[FitNet(teacher_tap, student_tap), KD(context.option("temperature", 4.0))],
        weights=[variables["fitnet"], variables["kd"]],
        student_loss_weight=variables["ce"], callbacks=callbacks,
        notes=f"hint-only epochs [0, {init_epochs}), KD from epoch {init_epochs}"
              + ("" if init_epochs < context.epochs else " (never reached: too few epochs)"))
