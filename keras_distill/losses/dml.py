"""DML: Zhang et al. 2018, Deep Mutual Learning (the mimicry term of a cohort)."""

import keras

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import log_softmax_kl


@keras.saving.register_keras_serializable(package="keras_distill")
class DML(DistillationLoss):
    """The mimicry term of Deep Mutual Learning, for one (peer -> member) pair.

    In a `keras_distill.Cohort` of N students trained together, member `i`
    minimises

        L_i = CE(y, softmax(z_i))
              + w * 1/(N-1) * sum_{j != i} T^2 * KL(p_j || p_i),
        p_j = softmax(stop_gradient(z_j) / T),  p_i = softmax(z_i / T).

    This term computes one `T^2 * KL(p_j || p_i)`: the Cohort calls it with
    `teacher` = the peer `j`'s outputs (under stop-gradient) and `student` =
    member `i`'s, and averages over the peers. There is no fixed teacher.
    The paper uses `T = 1` (then `T^2 = 1` and this is its plain KL); other
    temperatures keep KD's `T^2` gradient scaling.

    Args:
        temperature: Softening temperature `T` (default 1.0, the paper's).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch of the per-example
        `T^2 * KL(p_peer || p_member)`.

    Example:

    ```python
    peer = keras.models.clone_model(student)
    cohort = keras_distill.Cohort([student, peer],
                                  distillation_losses=[DML(temperature=1.0)])
    cohort.compile(optimizer="sgd",
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cohort.fit(train_ds, epochs=3)
    ```

    Reference:
        Zhang, Xiang, Hospedales, Lu. "Deep Mutual Learning". CVPR 2018.
        arXiv:1706.00384.
    """

    def __init__(self, temperature=1.0, name="dml", **kwargs):
        super().__init__(name=name, **kwargs)
        if not temperature > 0:
            raise ValueError(
                f"DML temperature must be > 0, got {temperature!r}. The paper uses 1.")
        self.temperature = float(temperature)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        return log_softmax_kl(teacher["logits"], student["logits"], self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


from keras_distill import methods  # noqa: E402


def _peer(context, index):
    """A new member: the `peer` zoo model, or a fresh copy of the student's architecture."""
    name = context.option("peer", "")
    if name:
        from keras_distill import models

        peer = models.get(name, num_classes=context.num_classes,
                          input_shape=tuple(context.student.input_shape[1:]))
    else:
        peer = keras.models.clone_model(context.student)  # fresh, independent initialisation
    peer.name = f"{context.student.name}_peer{index}"
    return peer


@methods.register(
    "dml", needs_teacher=False,
    description="Zhang et al. 2018: 2 students trained together, CE + KL(p_peer || p_self), T=1")
def dml_method(context):
    """Deep Mutual Learning: the student and `members - 1` peers trained as a `Cohort`.

    Options: `temperature` (1.0), `dml_weight` (1.0), `ce_weight` (1.0),
    `members` (2), `peer` (a zoo model name; default a copy of the student's
    architecture with its own initialisation), `prediction` (`0`: `call()`,
    hence the validation metrics, is member 0; `ensemble`: `call()` averages
    the members' probabilities). The recipe tests and exports member 0, the
    student it built.
    """
    from keras_distill.cohort import Cohort

    num_members = context.option("members", 2)
    if num_members < 2:
        raise ValueError(f"DML needs members >= 2, got {num_members}.")
    prediction = str(context.option("prediction", "0"))
    prediction = int(prediction) if prediction.isdigit() else prediction
    ce_weight = context.option("ce_weight", 1.0)

    def build_cohort(context, spec, weights=None):
        # Called as (context, spec) by recipes/distill.py, or (context, terms, weights).
        if isinstance(spec, methods.MethodSpec):
            terms, weights = spec.terms, spec.weights
        else:
            terms = spec
        members = [context.student] + [_peer(context, i) for i in range(1, num_members)]
        return Cohort(members, distillation_losses=terms, distillation_loss_weights=weights,
                      student_loss_weight=ce_weight, prediction=prediction)

    return methods.MethodSpec(
        terms=[DML(temperature=context.option("temperature", 1.0))],
        weights=[context.option("dml_weight", 1.0)],
        student_loss_weight=ce_weight,
        model_builder=build_cohort,
        notes="Cohort of students trained together; no teacher. The student is member 0.")
