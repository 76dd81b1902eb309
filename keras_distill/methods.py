"""Method registry: a recipe name -> the terms, weights and callbacks it uses.

Each method file registers a builder with `@register("name")`. The builder
takes a `MethodContext` (the models, the number of classes, the schedule,
user overrides) and returns a `MethodSpec` that the recipes hand to the
`Distiller`. Nothing in the Distiller knows any method by name.

Example:

```python
@register("kd", description="Hinton et al. 2015")
def kd_method(context):
    temperature = context.option("temperature", 4.0)
    return MethodSpec(terms=[KD(temperature)], weights=[0.9], student_loss_weight=0.1)
```
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

_REGISTRY: dict[str, "_Entry"] = {}
_MODIFIERS: dict[str, "_Modifier"] = {}


@dataclasses.dataclass
class MethodContext:
    """What a method builder may read.

    Attributes:
        teacher: The teacher model (None for cohort methods).
        student: The student model.
        num_classes: Number of classes.
        steps_per_epoch: Training steps per epoch.
        epochs: Number of epochs.
        teacher_taps: Ordered feature-stage tap names of the teacher
            (e.g. `["stage1", "stage2", "stage3"]`), empty if unknown.
        student_taps: The same for the student.
        options: User overrides, e.g. `{"temperature": 2.0}` from
            `--method_options temperature=2.0`.
        num_train_examples: Size of the training set (memory banks need it).
        validation_data: `(x, y)` held-out arrays carved from the training
            set (TLLM measures per-class accuracy on it), or None.
        seed: Random seed.
        model_dir: The run's output folder (reports go there), or None.
        baseline_student: The same student trained on labels only in this run
            (the from-scratch baseline), or None; a reference for TLLM.
        train_data: The training data (a batched `tf.data.Dataset` of
            `(x, y)` or `(x, y)` arrays), or None; for methods that need a
            preliminary run on it (TLLM's reference student).
        reference_history: Per-epoch per-class validation accuracy of the
            same student trained on labels only with the run's own recipe
            (a list of `K`-lists, one per epoch), or a `() -> list` that
            trains it when called, or None (TLLM's reference).
    """

    teacher: Any
    student: Any
    num_classes: int
    steps_per_epoch: int = 1
    epochs: int = 1
    teacher_taps: list = dataclasses.field(default_factory=list)
    student_taps: list = dataclasses.field(default_factory=list)
    options: dict = dataclasses.field(default_factory=dict)
    num_train_examples: int = 0
    validation_data: Any = None
    seed: int = 0
    train_data: Any = None
    model_dir: Any = None
    baseline_student: Any = None
    reference_history: Any = None

    def option(self, name, default):
        """A user override cast to the default's type, else the default."""
        if name not in self.options:
            return default
        value = self.options[name]
        if isinstance(default, bool) and isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        if default is not None and isinstance(value, str) and not isinstance(default, str):
            return type(default)(value)
        return value


@dataclasses.dataclass
class MethodSpec:
    """What a method contributes to a run.

    Attributes:
        terms: Distillation terms (list of `DistillationLoss`, or a dict by name).
        weights: One weight per term (float, variable or schedule).
        student_loss_weight: Weight of the supervised loss.
        callbacks: Keras callbacks the method needs (schedules, mask updates).
        side_inputs: Side inputs the data pipeline must add (e.g. `("index",)`).
        model_builder: Optional `(context, spec) -> keras.Model`
            for methods trained by another model than the `Distiller`
            (e.g. a DML cohort); None means the standard Distiller.
        notes: Free text recorded in the run's config.
    """

    terms: Any = dataclasses.field(default_factory=list)
    weights: Any = None
    student_loss_weight: float = 1.0
    callbacks: list = dataclasses.field(default_factory=list)
    side_inputs: tuple = ()
    model_builder: Callable | None = None
    notes: str = ""


@dataclasses.dataclass
class _Entry:
    builder: Callable[[MethodContext], MethodSpec]
    description: str
    needs_teacher: bool


def register(name, description="", needs_teacher=True):
    """Decorator registering a method builder under `name`."""
    def decorate(builder):
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"Method {name!r} is registered twice.")
        _REGISTRY[name] = _Entry(builder, description, needs_teacher)
        return builder
    return decorate


@dataclasses.dataclass
class _Modifier:
    transform: Callable[[MethodSpec, MethodContext], MethodSpec]
    description: str


def register_modifier(suffix, transform, description=""):
    """Registers a suffix that derives a method from any registered one.

    `build("<name>_<suffix>", context)` builds method `name` and passes its
    spec through `transform(spec, context) -> MethodSpec`; e.g. the suffix
    `"plus"` (KD+) makes `"dkd_plus"` from `"dkd"`. A name registered in
    full (e.g. `"kd_plus"`) takes precedence.
    """
    if suffix in _MODIFIERS and _MODIFIERS[suffix].transform is not transform:
        raise ValueError(f"Method modifier {suffix!r} is registered twice.")
    _MODIFIERS[suffix] = _Modifier(transform, description)
    return transform


def modifiers():
    """`{suffix: description}` of the registered method modifiers."""
    _load_all()
    return {suffix: _MODIFIERS[suffix].description for suffix in sorted(_MODIFIERS)}


def _load_all():
    import keras_distill.losses  # noqa: F401  (registers every method)


def available():
    """Sorted names of the registered methods."""
    _load_all()
    return sorted(_REGISTRY)


def describe():
    """`{name: description}` of the registered methods."""
    _load_all()
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def needs_teacher(name):
    return _entry(name).needs_teacher


def _entry(name):
    _load_all()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for suffix, modifier in _MODIFIERS.items():
        base = name[:-len(suffix) - 1]
        if name.endswith("_" + suffix) and base in _REGISTRY:
            entry = _REGISTRY[base]
            return _Entry(
                lambda context, entry=entry, modifier=modifier: modifier.transform(
                    entry.builder(context), context),
                f"{entry.description} {modifier.description}".strip(), entry.needs_teacher)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" Did you mean {close}?" if close else ""
    derived = "".join(f" Any of them + '_{suffix}' ({m.description})."
                      for suffix, m in sorted(_MODIFIERS.items()))
    raise ValueError(
        f"Unknown method {name!r}.{hint} Available methods: {sorted(_REGISTRY)}.{derived}")


def build(name, context):
    """Builds the `MethodSpec` of method `name` for `context`."""
    return _entry(name).builder(context)
