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


from keras_distill import methods  # noqa: E402
from keras_distill.losses.kd import KD  # noqa: E402
from keras_distill.callbacks.variable_schedule import VariableSchedule  # noqa: E402


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


@methods.register(
    "bss", description="Heo et al. 2019: CE + KD + KD on adversarial samples near the "
                       "teacher's boundary, T=3, reference weight schedule")
def bss_method(context):
    """BSS with the reference's schedule (or constant `kd_weight`/`bss_weight`).

    Options: `temperature` (3.0), `attack_steps` (10), `step_size` (0.3),
    `sample_fraction` (0.25), `target_class` (`sample`), `clip_min`/`clip_max`
    (default no clipping; giving one clips to `[clip_min or 0, clip_max or 1]`),
    `ce_weight` (1.0), `kd_weight` and `bss_weight` (default: the reference's
    per-epoch schedule; giving either makes both constant).
    """
    temperature = context.option("temperature", 3.0)
    steps = context.option("attack_steps", 10)
    clip = None
    if "clip_min" in context.options or "clip_max" in context.options:
        clip = (context.option("clip_min", 0.0), context.option("clip_max", 1.0))
    view = BoundarySupportingSamples(
        num_steps=steps, step_size=context.option("step_size", 0.3),
        sample_fraction=context.option("sample_fraction", 0.25),
        target_class=context.option("target_class", "sample"),
        clip_range=clip, seed=context.seed)
    terms = [KD(temperature=temperature, name="kd"),
             BSS(temperature=temperature, input_view=view, name="bss")]
    callbacks = []
    if "kd_weight" in context.options or "bss_weight" in context.options:
        kd_weight, bss_weight = reference_weights(0, context.epochs, temperature)
        weights = [context.option("kd_weight", kd_weight), context.option("bss_weight", bss_weight)]
    else:
        def schedule(index):
            return lambda epoch: reference_weights(epoch, context.epochs, temperature)[index]
        weights = [schedule(0)(0), schedule(1)(0)]
        callbacks = [
            VariableSchedule("kd", schedule(0)), VariableSchedule("bss", schedule(1)),
            # No attack once its weight is 0 (the reference skips it too).
            VariableSchedule(view.max_steps,
                             lambda epoch: steps if schedule(1)(epoch) > 0 else 0)]
    return methods.MethodSpec(
        terms=terms, weights=weights, student_loss_weight=context.option("ce_weight", 1.0),
        callbacks=callbacks,
        notes="Each step attacks the teacher (up to attack_steps forward+backward passes "
              "on sample_fraction of the batch).")
