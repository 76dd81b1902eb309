"""KD+'s "+": a copy of any term computed on extra inputs built from each batch.

KD+ adds to a method's terms a copy computed on extra inputs built from
each batch (a pluggable `keras_distill.views.InputView`: mixup, cutmix,
gaussian noise, or a user-supplied unlabeled dataset). The teacher labels
those inputs in inference mode (the trainer always runs it so) and the
student matches it with a distillation-only term; no hard label is used.

This module joins terms (`keras_distill.losses`) and views
(`keras_distill.views`), so it lives beside them rather than in `losses/`,
which holds maths only. The recipe modifier is `keras_distill.methods.kd_plus`.
"""

from keras_distill import views
from keras_distill.losses import DistillationLoss

SOURCES = ("mixup", "cutmix", "noise", "unlabeled")


def make_view(source="mixup", alpha=1.0, stddev=0.1, key="unlabeled", seed=None):
    """The `InputView` of a named source of extra inputs.

    Args:
        source: `"mixup"` (default), `"cutmix"`, `"noise"` or `"unlabeled"`
            (a side input of the batch holding unlabeled inputs).
        alpha: Beta parameter of mixup / cutmix (default 1.0).
        stddev: Standard deviation of the gaussian noise (default 0.1).
        key: Side-input key of the unlabeled inputs (default `"unlabeled"`).
        seed: Random seed of the view.

    Returns:
        An `InputView`.
    """
    if source == "mixup":
        return views.Mixup(alpha=alpha, seed=seed)
    if source == "cutmix":
        return views.CutMix(alpha=alpha, seed=seed)
    if source == "noise":
        return views.GaussianNoise(stddev=stddev, seed=seed)
    if source == "unlabeled":
        return views.SideInput(key)
    raise ValueError(f"Unknown source of extra inputs {source!r}; choose one of {SOURCES}.")


def plus(term, view=None, name=None):
    """A copy of `term` computed on the extra inputs of `view` (the "+").

    With `view=None` the source is mixup, `lam ~ Beta(1, 1)`. The copy has
    the same hyperparameters (rebuilt from `get_config`); it gets its own
    state variables and adapters, so give the "+" to logit-level terms
    (KD, DKD, ...), where that is exact.

    Args:
        term: A `DistillationLoss` computed on the batch.
        view: An `InputView`; share one view object between several terms
            so the networks run on it once.
        name: Name of the copy (default `"<term name>_ood"`).

    Returns:
        The new `DistillationLoss`, named e.g. `"kd_ood"`.

    Example:

    ```python
    kd = KD(temperature=4.0)
    distiller = Distiller(teacher, student, [kd, plus(kd, Mixup(alpha=1.0))],
                          distillation_loss_weights=[0.9, 0.9], student_loss_weight=0.1)
    ```

    Reference:
        Deng, Zhang. "Can Students Outperform Teachers in Knowledge
        Distillation based Model Compression?" OpenReview (ICLR 2021
        submission), 2021.
    """
    if not isinstance(term, DistillationLoss):
        raise TypeError(f"plus() needs a DistillationLoss, got {type(term).__name__}.")
    if term.input_view is not None:
        raise ValueError(f"Term {term.name!r} already has an input view; plus() copies a "
                         "term computed on the batch.")
    view = view if view is not None else views.Mixup(alpha=1.0)
    if not isinstance(view, views.InputView):
        raise TypeError(f"view must be a keras_distill.views.InputView, got {type(view).__name__}.")
    config = {**term.get_config(), "input_view": None, "name": name or f"{term.name}_ood"}
    copy = type(term).from_config(config)
    copy.input_view = view
    return copy
