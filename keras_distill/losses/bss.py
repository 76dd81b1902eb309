"""BSS: Heo et al. 2019, KD on adversarial samples supporting the decision boundary."""

import keras

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import log_softmax_kl
from keras_distill.views import BoundarySupportingSamples


@keras.saving.register_keras_serializable(package="keras_distill")
class BSS(DistillationLoss):
    """KD on boundary-supporting samples crafted by attacking the teacher.

    The term is KD computed on the samples of a
    `keras_distill.views.BoundarySupportingSamples` view (its `input_view`):
    inputs moved by an iterative targeted attack on the teacher from their
    class until they just cross the teacher's boundary with another class.
    Per crafted sample `x_hat` with view weight `w` (0 for padding slots):

        L = w * T^2 * KL(softmax(z_t(x_hat) / T) || softmax(z_s(x_hat) / T)),

    averaged over the view's samples. Used with KD on the batch itself
    and the hard-label loss (the `bss` recipe):

        L_total = CE(y, z_s(x)) + w_kd * KD_T(x) + w_bss * KD_T(x_hat).

    Args:
        temperature: `T` (default 3.0, the reference's).
        input_view: The view crafting the samples; default
            `BoundarySupportingSamples()` (10 steps, step 0.3, 25% of the
            batch, target class sampled from the teacher's softmax).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the weighted mean over the crafted samples.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher, student,
        distillation_losses=[KD(temperature=3.0), BSS(temperature=3.0)],
        distillation_loss_weights=[4 / 9, 2 / 9], student_loss_weight=1.0)
    ```

    Reference:
        Heo, Lee, Yun, Choi. "Knowledge Distillation with Adversarial Samples
        Supporting Decision Boundary". AAAI 2019. arXiv:1805.05532.
        Code: github.com/bhheo/BSS_distillation.
    """

    def __init__(self, temperature=3.0, input_view=None, name="bss", **kwargs):
        if input_view is None:
            input_view = BoundarySupportingSamples()
        if not getattr(input_view, "needs_teacher", False):
            raise ValueError(
                f"BSS needs a view that attacks the teacher (needs_teacher = True, e.g. "
                f"BoundarySupportingSamples), got {type(input_view).__name__}. For KD on "
                "another view use KD(input_view=...).")
        if not temperature > 0:
            raise ValueError(
                f"BSS computes KD on the crafted samples: its KD temperature must be > 0, "
                f"got {temperature!r}. The reference uses 3.")
        super().__init__(input_view=input_view, name=name, **kwargs)
        self.temperature = float(temperature)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        return log_softmax_kl(teacher["logits"], student["logits"], self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
