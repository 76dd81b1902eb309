"""The machinery of the method table: context, spec, typed options, modifiers, lookup.

A method is a `Method`: a builder `MethodContext -> MethodSpec`, the frozen
dataclass of its options, a one-line description and its docs page. The
table of methods is written out in `keras_distill/methods/__init__.py`; this
module registers nothing by itself.

`--method_options` text reaches a builder as an instance of the method's
options dataclass: `parse` converts each value to the field's annotated type
and refuses an unknown key or a bad value with an `OptionError`, one line
naming the key, the value and what is expected.

Example:

```python
@dataclasses.dataclass(frozen=True)
class KDOptions:
    temperature: float = 4.0

    def __post_init__(self):
        registry.check(self.temperature > 0, "temperature", self.temperature, "a float > 0")


def build(context):
    return registry.MethodSpec(terms=[KD(context.options.temperature)], weights=[0.9])


KD_METHOD = registry.Method(build, KDOptions, description="Hinton et al. 2015", page="kd.md")
```
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import textwrap
import types
import typing
from typing import Any, Callable


class OptionError(ValueError):
    """A `--method_options` key or value a method cannot take; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A method without options."""


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
        options: User overrides. Callers give a mapping, e.g.
            `{"temperature": "2.0"}` from `--method_options temperature=2.0`;
            `build` hands the builder the method's options dataclass instead.
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
    options: Any = dataclasses.field(default_factory=dict)
    num_train_examples: int = 0
    validation_data: Any = None
    seed: int = 0
    train_data: Any = None
    model_dir: Any = None
    baseline_student: Any = None
    reference_history: Any = None

    def option(self, name, default):
        """A user override cast to the default's type, else the default.

        For code outside the builders that reads a raw options mapping;
        builders read the typed `context.options` instead.
        """
        if dataclasses.is_dataclass(self.options):
            value = getattr(self.options, name, None)
            return default if value is None else value
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


@dataclasses.dataclass(frozen=True)
class Method:
    """One entry of the method table.

    Attributes:
        builder: `MethodContext -> MethodSpec`; `context.options` is an
            instance of `options`.
        options: The frozen dataclass of the method's options (`NoOptions`).
        description: One line for `--list_methods`.
        page: The method's page under `docs/methods/` (e.g. `"kd.md"`).
        needs_teacher: False for methods trained without a fixed teacher.
    """

    builder: Callable[[MethodContext], MethodSpec]
    options: type = NoOptions
    description: str = ""
    page: str = ""
    needs_teacher: bool = True


@dataclasses.dataclass(frozen=True)
class Modifier:
    """A suffix deriving a method from any other: `"<name>_<suffix>"`.

    Attributes:
        transform: `(spec, context) -> MethodSpec`, run on the base method's spec.
        options: The dataclass of the modifier's own options, added to the base's.
        description: One line for `--list_methods`.
    """

    transform: Callable[[MethodSpec, MethodContext], MethodSpec]
    options: type = NoOptions
    description: str = ""


def check(condition, key, value, expected):
    """Raises `OptionError` naming `key=value` and what is `expected` unless `condition`.

    Call it in an options dataclass's `__post_init__`, e.g.
    `check(self.temperature > 0, "temperature", self.temperature, "a float > 0")`.
    """
    if not condition:
        raise OptionError(f"{key}={value!r}: expected {expected}.")


def check_choice(key, value, choices):
    """`check` that `value` is one of `choices`."""
    check(value in choices, key, value, f"one of {tuple(choices)}")


def combine(base, extra):
    """The options dataclass holding the fields of `base` and then those of `extra`.

    Both `__post_init__` validations run. Used for modified methods
    (`dkd_plus`: DKD's options and the `plus` options).
    """
    clash = {f.name for f in dataclasses.fields(base)} & {f.name for f in dataclasses.fields(extra)}
    if clash:
        raise ValueError(f"{base.__name__} and {extra.__name__} both define {sorted(clash)}.")

    def post_init(self):
        for part in (base, extra):
            if hasattr(part, "__post_init__"):
                part.__post_init__(self)

    combined = types.new_class(f"{base.__name__}With{extra.__name__}", (extra, base), {},
                               lambda namespace: namespace.update(
                                   {"__post_init__": post_init, "__module__": base.__module__}))
    return dataclasses.dataclass(frozen=True)(combined)


# ---------------------------------------------------------------- options text
_NONE_WORDS = ("", "none", "None")
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


def _type_name(annotation):
    """`float`, `int | None`, `str+...` (a tuple written `a+b+c`), `any`."""
    if annotation is Any:
        return "any"
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(member) for member in typing.get_args(annotation))
    if origin is tuple:
        return f"{_type_name(typing.get_args(annotation)[0])}+..."
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _convert(value, annotation):
    """`value` (text or a Python value) as `annotation`; raises ValueError/TypeError."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if type(None) in members and (value is None or value in _NONE_WORDS):
            return None
        errors = []
        for member in members:
            if member is type(None):
                continue
            try:
                return _convert(value, member)
            except (TypeError, ValueError) as error:
                errors.append(error)
        raise errors[0]
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if isinstance(value, str):  # "a+b+c" (',' separates the options themselves)
            value = [item for item in value.split("+") if item]
        if not isinstance(value, collections.abc.Iterable):
            raise TypeError(f"not a sequence: {value!r}")
        return tuple(_convert(item, item_type) for item in value)
    if annotation is bool:
        if isinstance(value, str):
            if value.lower() in _TRUE_WORDS:
                return True
            if value.lower() in _FALSE_WORDS:
                return False
            raise ValueError(value)
        if value in (0, 1):
            return bool(value)
        raise TypeError(value)
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(value)
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(value)
        return float(value)
    if annotation is str:
        if isinstance(value, (list, tuple, dict)):
            raise TypeError(value)
        return str(value)
    raise TypeError(f"unsupported option type {annotation!r}")


def option_fields(options_class):
    """`[(name, type name, default)]` of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(options_class)
    return [(field.name, _type_name(hints[field.name]), field.default)
            for field in dataclasses.fields(options_class)]


def describe_options(options_class):
    """`"temperature: float = 4.0, kd_weight: float = 0.9"` (or `"none"`)."""
    fields = option_fields(options_class)
    return ", ".join(f"{name}: {kind} = {default!r}" for name, kind, default in fields) or "none"


def parse(options_class, options, method=""):
    """An instance of `options_class` from a mapping of overrides (text or Python values).

    Args:
        options_class: A frozen options dataclass.
        options: A mapping `{key: value}` (values as text from
            `--method_options`, or Python values), an instance of
            `options_class` (returned as is), or None.
        method: The method's name, for the messages.

    Returns:
        The options instance.

    Raises:
        OptionError: an unknown key (the message names a close match and
            every valid key with its default) or a value of the wrong type
            or out of range.
    """
    if isinstance(options, options_class):
        return options
    options = dict(options or {})
    hints = typing.get_type_hints(options_class)
    valid = [field.name for field in dataclasses.fields(options_class)]
    where = f" of --method={method}" if method else ""
    unknown = [key for key in options if key not in valid]
    if unknown:
        hints_text = "".join(
            f" {key!r}: did you mean {close[0]!r}?" for key in unknown
            for close in [difflib.get_close_matches(key, valid, n=1)] if close)
        reader = f"--method={method}" if method else options_class.__name__
        raise OptionError(
            f"--method_options {unknown} are not read by {reader}, which reads {valid}: check "
            f"the spelling.{hints_text} Options (name: type = default): "
            f"{describe_options(options_class)}.")
    values = {}
    for key, value in options.items():
        try:
            values[key] = _convert(value, hints[key])
        except (TypeError, ValueError):
            raise OptionError(f"--method_options {key}={value!r}{where}: expected "
                              f"{_type_name(hints[key])}.") from None
    try:
        return options_class(**values)
    except OptionError as error:
        raise OptionError(f"--method_options{where}: {error}") from None


# --------------------------------------------------------------------- lookup
class Registry:
    """Looks methods up by name in a table, with suffix modifiers.

    Args:
        methods: `{name: Method}`.
        modifiers: `{suffix: Modifier}`; `"<name>_<suffix>"` builds method
            `name` and passes its spec through the modifier. A name in
            `methods` takes precedence (e.g. `"kd_plus"`).
    """

    def __init__(self, methods, modifiers=None):
        self.methods = dict(methods)
        self.modifiers = dict(modifiers or {})

    def register(self, name, method=None, **method_fields):
        """Adds a method of your own (e.g. in a script or a test) under `name`.

        Args:
            name: The method's name.
            method: A `Method`; or omit it and use `register` as a decorator
                of a builder, with the other `Method` fields as keywords
                (`description=...`, `options=...`, `needs_teacher=...`).

        Returns:
            `method`, or the decorator (which returns the builder).

        Example:

        ```python
        @methods.register("mine", description="KD at T=2")
        def mine(context):
            return methods.MethodSpec(terms=[KD(2.0)], weights=[1.0])
        ```
        """
        if method is None:
            def decorate(builder):
                self.register(name, Method(builder, **method_fields))
                return builder
            return decorate
        existing = self.methods.get(name)
        if existing is not None and existing.builder is not method.builder:
            raise ValueError(f"Method {name!r} is already in the table.")
        self.methods[name] = method
        return method

    def available(self):
        """Sorted names of the methods in the table."""
        return sorted(self.methods)

    def describe(self):
        """`{name: description}` of the methods."""
        return {name: self.methods[name].description for name in sorted(self.methods)}

    def describe_modifiers(self):
        """`{suffix: description}` of the modifiers."""
        return {suffix: self.modifiers[suffix].description for suffix in sorted(self.modifiers)}

    def listing(self, width=100):
        """The `--list_methods` text: each method, its description and its options.

        Options read `name: type = default`, from the method's options dataclass.
        """
        indent = " " * 25

        def options_lines(options_class):
            # Wrapped between options, never inside one ("\0" holds their inner spaces).
            text = f"options: {describe_options(options_class)}"
            text = ", ".join(part.replace(" ", "\0") for part in text.split(", "))
            return [line.replace("\0", " ") for line in textwrap.wrap(
                text, width, initial_indent=indent, subsequent_indent=indent + "  ")]

        lines = []
        for name in self.available():
            method = self.methods[name]
            lines.append(f"{name:24s} {method.description}")
            lines += options_lines(method.options)
        for suffix, modifier in sorted(self.modifiers.items()):
            lines += ["", f"<method>_{suffix}: any method above with "
                          f"{modifier.description or suffix} (e.g. dkd_{suffix}); its options "
                          "and these:"]
            lines += options_lines(modifier.options)
        return "\n".join(lines)

    def method(self, name):
        """The `Method` called `name` (modified methods included).

        Raises:
            ValueError: an unknown name, with close matches and the list.
        """
        if name in self.methods:
            return self.methods[name]
        for suffix, modifier in self.modifiers.items():
            base_name = name[:-len(suffix) - 1]
            if name.endswith("_" + suffix) and base_name in self.methods:
                base = self.methods[base_name]
                options = combine(base.options, modifier.options)

                def builder(context, base=base, modifier=modifier):
                    return modifier.transform(base.builder(context), context)

                return Method(builder, options,
                              f"{base.description} {modifier.description}".strip(),
                              base.page, base.needs_teacher)
        close = difflib.get_close_matches(name, list(self.methods), n=3)
        hint = f" Did you mean {close}?" if close else ""
        derived = "".join(f" Any of them + '_{suffix}' ({modifier.description})."
                          for suffix, modifier in sorted(self.modifiers.items()))
        raise ValueError(f"Unknown method {name!r}.{hint} Available methods: "
                         f"{self.available()}.{derived}")

    def needs_teacher(self, name):
        """Whether method `name` distils from a fixed teacher."""
        return self.method(name).needs_teacher

    def parse_options(self, name, options):
        """Method `name`'s options dataclass from a mapping (see `parse`)."""
        return parse(self.method(name).options, options, method=name)

    def build(self, name, context):
        """The `MethodSpec` of method `name` for `context`.

        `context.options` (a mapping, or the method's options dataclass) is
        parsed first: a bad option fails before anything is built.
        """
        method = self.method(name)
        typed = dataclasses.replace(context, options=parse(method.options, context.options,
                                                           method=name))
        return method.builder(typed)
