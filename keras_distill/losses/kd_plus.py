"""KD+: distil beyond the training points, and the generic "+" for any method.

KD+ adds to a method's terms a copy computed on extra inputs built from
each batch (a pluggable `keras_distill.views.InputView`: mixup, cutmix,
gaussian noise, or a user-supplied unlabeled dataset). The teacher labels
those inputs in inference mode (the Distiller always runs it so) and the
student matches it with a distillation-only term; no hard label is used.
"""

import dataclasses

from keras_distill import methods, views
from keras_distill.losses.base import DistillationLoss
from keras_distill.losses.kd import KD

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


def plus_spec(spec, view=None, weight=None, terms=None):
    """Adds the "+" to a `MethodSpec`: a view copy of its logit-level terms.

    Args:
        spec: The base method's `MethodSpec`.
        view: The `InputView` (default mixup, `alpha = 1`), shared by the copies.
        weight: Weight of each copy; default the base term's own weight
            (the same float, variable or schedule, e.g. a warm-up).
        terms: Names of the terms to copy; default every term that reads
            only logits (no feature taps, no side inputs, no view).

    Returns:
        A new `MethodSpec` with the copies appended (named `"<name>_ood"`)
        and the view's side inputs added to `side_inputs`.
    """
    if spec.model_builder is not None:
        raise ValueError("The '+' adds Distiller terms; this method trains its own model "
                         "(spec.model_builder), so it cannot be given the '+'.")
    if isinstance(spec.terms, dict):
        names, base_terms = list(spec.terms), list(spec.terms.values())
    else:
        base_terms = list(spec.terms)
        names = [t.name for t in base_terms]
    weights = spec.weights
    if weights is None:
        weights = [1.0] * len(base_terms)
    elif isinstance(weights, dict):
        weights = [weights.get(n, 1.0) for n in names]
    elif not isinstance(weights, (list, tuple)):
        weights = [weights] * len(base_terms)
    if terms is None:
        chosen = [i for i, t in enumerate(base_terms)
                  if not (t.teacher_taps or t.student_taps or t.side_inputs or t.input_view)]
    else:
        unknown = set(terms) - set(names)
        if unknown:
            raise ValueError(f"plus_spec: no term named {sorted(unknown)}; terms: {names}.")
        chosen = [names.index(n) for n in terms]
    if not base_terms:
        raise ValueError("The method has no distillation term to give the '+' to.")
    if not chosen:
        raise ValueError(
            f"The method's terms {names} all read feature taps, side inputs or a view: "
            "there is no logit-level term to give the '+' to. Name the terms with "
            "plus_spec(..., terms=[...]) (each copy gets its own adapters).")
    view = view if view is not None else views.Mixup(alpha=1.0)
    copies = [plus(base_terms[i], view, name=f"{names[i]}_ood") for i in chosen]
    copy_weights = [weights[i] if weight is None else weight for i in chosen]
    if isinstance(spec.terms, dict):
        new_terms = {**spec.terms, **{c.name: c for c in copies}}
    else:
        new_terms = base_terms + copies
    return dataclasses.replace(
        spec, terms=new_terms,
        weights=list(weights) + copy_weights,
        side_inputs=tuple(dict.fromkeys(tuple(spec.side_inputs) + tuple(view.side_inputs))),
        notes=(spec.notes + " " if spec.notes else "") + f"+ {type(view).__name__} view terms "
              f"{[c.name for c in copies]}")


def plus_from_options(spec, context, default_weight=None):
    """`plus_spec` configured by `--method_options`.

    Options: `plus_source` (mixup | cutmix | noise | unlabeled, default
    mixup), `plus_alpha` (1.0), `plus_stddev` (0.1), `plus_key`
    ("unlabeled"), `plus_weight` (default: the base term's weight),
    `plus_terms` (term names separated by `+`; default the logit terms).
    """
    view = make_view(context.option("plus_source", "mixup"),
                     alpha=context.option("plus_alpha", 1.0),
                     stddev=context.option("plus_stddev", 0.1),
                     key=context.option("plus_key", "unlabeled"), seed=context.seed)
    weight = context.option("plus_weight", default_weight)
    if isinstance(weight, str):
        weight = float(weight)
    terms = context.option("plus_terms", None)
    if isinstance(terms, str):
        terms = [t for t in terms.split("+") if t]
    return plus_spec(spec, view, weight=weight, terms=terms)


methods.register_modifier(
    "plus", plus_from_options,
    description="KD+: adds a distillation-only copy of the logit terms on extra inputs "
                "(plus_source=mixup|cutmix|noise|unlabeled)")


@methods.register("kd_plus", description="KD+: 0.9 KD + 0.9 KD on mixup inputs (kd_ood) + 0.1 CE")
def kd_plus_method(context):
    base = methods.MethodSpec(
        terms=[KD(temperature=context.option("temperature", 4.0))],
        weights=[context.option("kd_weight", 0.9)],
        student_loss_weight=context.option("ce_weight", 0.1))
    return plus_from_options(base, context, default_weight=0.9)
