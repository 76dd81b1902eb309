"""Method recipes: a name -> the terms, weights, callbacks and options of a run.

The table below is the whole list: one line per method, each pointing at
its builder file in this package. Nothing registers itself on import.
`build(name, context)` parses `context.options` into the method's typed
options dataclass (refusing unknown keys and bad values) and calls the
builder; `"<name>_plus"` derives a KD+ method from any `name`.

Example:

```python
from keras_distill import methods

context = methods.MethodContext(teacher, student, num_classes=10,
                                options={"temperature": "2"})
spec = methods.build("kd", context)  # spec.terms, spec.weights, spec.student_loss_weight
```
"""

from keras_distill.methods import (
    attention_transfer, bss, cc, crd, dkd, dml, dpk, fitnet, fsp, kd, kd_plus, one, pkt, rkd,
    sp, tang, tllm, vid)
from keras_distill.methods.kd_plus import plus_spec
from keras_distill.methods.registry import (
    Method, MethodContext, MethodSpec, Modifier, NoOptions, OptionError, Registry,
    describe_options, option_fields)

METHODS = {
    "scratch": kd.SCRATCH,
    "kd": kd.METHOD,
    "kd_plus": kd_plus.METHOD,
    "tang": tang.METHOD,
    "tang_full": tang.FULL,
    "tang_label_smoothing": tang.LABEL_SMOOTHING,
    "tang_partial": tang.PARTIAL,
    "tang_top_k": tang.TOP_K,
    "tang_reweight": tang.REWEIGHT,
    "dpk": dpk.METHOD,
    "tllm": tllm.METHOD,
    "dkd": dkd.METHOD,
    "fitnet": fitnet.METHOD,
    "fitnet_two_stage": fitnet.TWO_STAGE,
    "at": attention_transfer.METHOD,
    "fsp": fsp.METHOD,
    "vid": vid.METHOD,
    "rkd": rkd.METHOD,
    "sp": sp.METHOD,
    "pkt": pkt.METHOD,
    "cc": cc.METHOD,
    "crd": crd.METHOD,
    "dml": dml.METHOD,
    "bss": bss.METHOD,
    "one": one.METHOD,
}

MODIFIERS = {
    "plus": kd_plus.PLUS,
}

REGISTRY = Registry(METHODS, MODIFIERS)


def available():
    """Sorted names of the methods."""
    return REGISTRY.available()


def describe():
    """`{name: description}` of the methods."""
    return REGISTRY.describe()


def modifiers():
    """`{suffix: description}` of the method modifiers (`"plus"`: `<name>_plus`)."""
    return REGISTRY.describe_modifiers()


def listing():
    """The `--list_methods` text: every method with its description and typed options."""
    return REGISTRY.listing()


def method(name):
    """The `Method` called `name`, `"<name>_plus"` included; ValueError with close matches."""
    return REGISTRY.method(name)


def needs_teacher(name):
    """Whether method `name` distils from a fixed teacher."""
    return REGISTRY.needs_teacher(name)


def parse_options(name, options):
    """Method `name`'s typed options from a `{key: value}` mapping; `OptionError` if bad."""
    return REGISTRY.parse_options(name, options)


def build(name, context):
    """The `MethodSpec` of method `name` for `context` (options parsed first)."""
    return REGISTRY.build(name, context)


def register(name, method=None, **method_fields):
    """Adds a method of your own (a script's, a test's) to the registry, not to `METHODS`.

    `register("mine", Method(builder))`, or as a decorator of a builder:
    `@register("mine", description="...")` (see `Registry.register`).
    """
    return REGISTRY.register(name, method, **method_fields)


__all__ = [
    "METHODS", "MODIFIERS", "Method", "MethodContext", "MethodSpec", "Modifier", "NoOptions",
    "OptionError", "Registry", "available", "build", "describe", "describe_options", "listing",
    "method", "modifiers", "needs_teacher", "option_fields", "parse_options", "plus_spec", "register",
]
