"""Recipe `kd_plus` (KD+: Deng & Zhang 2021) and the `plus` modifier (`<method>_plus`).

The "+" is a distillation-only copy of a method's logit-level terms computed
on extra inputs (`plus_spec`); the options pick
the source of those inputs.
"""

from __future__ import annotations

import dataclasses

from keras_distill import views
from keras_distill.methods import kd, registry
from keras_distill.plus import SOURCES, make_view, plus


@dataclasses.dataclass(frozen=True)
class PlusOptions:
    """Options of the "+": the source of the extra inputs and the copies' weight.

    `plus_weight=None`: each copy takes its base term's weight; `plus_terms=None`:
    every logit-level term is copied (names joined by '+').
    """

    plus_source: str = "mixup"
    plus_alpha: float = 1.0
    plus_stddev: float = 0.1
    plus_key: str = "unlabeled"
    plus_weight: float | None = None
    plus_terms: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.plus_source not in SOURCES:
            raise registry.OptionError(
                f"Unknown source of extra inputs {self.plus_source!r}; choose one of {SOURCES}.")
        registry.check(self.plus_alpha > 0, "plus_alpha", self.plus_alpha, "a float > 0")
        registry.check(self.plus_stddev >= 0, "plus_stddev", self.plus_stddev, "a float >= 0")
        registry.check(self.plus_weight is None or self.plus_weight >= 0, "plus_weight",
                       self.plus_weight, "a float >= 0")


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
    """`plus_spec` configured by the `PlusOptions` in `context.options`."""
    options = context.options
    view = make_view(options.plus_source, alpha=options.plus_alpha,
                     stddev=options.plus_stddev, key=options.plus_key, seed=context.seed)
    weight = options.plus_weight if options.plus_weight is not None else default_weight
    terms = list(options.plus_terms) if options.plus_terms is not None else None
    return plus_spec(spec, view, weight=weight, terms=terms)


KDPlusOptions = registry.combine(kd.KDOptions, PlusOptions)


def build(context):
    return plus_from_options(kd.build(context), context, default_weight=0.9)


METHOD = registry.Method(
    build, KDPlusOptions, page="kd_plus.md",
    description="KD+: 0.9 KD + 0.9 KD on mixup inputs (kd_ood) + 0.1 CE")
PLUS = registry.Modifier(
    plus_from_options, PlusOptions,
    description="KD+: adds a distillation-only copy of the logit terms on extra inputs "
                "(plus_source=mixup|cutmix|noise|unlabeled)")
