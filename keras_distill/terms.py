"""The named, weighted set of terms every trainer optimises.

`Distiller`, `Cohort` and `NativeEnsemble` all minimise a weighted sum of
distillation terms plus a weighted supervised loss. `WeightedTerms` holds
that sum's parts: the terms under unique names, one weight per term and
the supervised weight. A weight is a float (stored in a non-trainable
`keras.Variable` that callbacks `.assign()`), a `keras.Variable`, or a
`keras.optimizers.schedules.LearningRateSchedule` evaluated at the
optimizer's step. It also answers what the terms need together (taps, side
inputs, input views by name) and round-trips its weights through a config.

The module's functions are the plumbing the trainers share: the batch's
layout (`split_inputs`, `integer_labels`) and Keras's per-replica loss
scaling (`scale`, `unscale`).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_distill.losses.base import DistillationLoss
from keras_distill.losses.keras_compat import from_keras

# A dict-shaped batch `{"inputs": x, **side_inputs}` holds the model input under this key.
SIDE_INPUTS_KEY = "inputs"


# ---------------------------------------------------------------- replicas
def num_replicas():
    """Replicas of the current `tf.distribute` strategy (1 outside any)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale(value):
    """Applies Keras's `1 / num_replicas` per-replica loss scaling (e.g. to regularisers).

    Keras's losses divide by the GLOBAL batch size, so each replica's value is
    its share of the global loss and gradients summed over replicas are right.
    A loss computed without that division (a layer's regularisation) needs it.

    Args:
        value: A scalar tensor.

    Returns:
        `value / num_replicas`, or `value` itself on one replica.
    """
    replicas = num_replicas()
    return value / replicas if replicas > 1 else value


def unscale(value):
    """Undoes `scale`: a replica's share of a loss back to the loss, for logging.

    Args:
        value: A scalar tensor scaled as Keras scales losses.

    Returns:
        `value * num_replicas`, or `value` itself on one replica.
    """
    replicas = num_replicas()
    return value * replicas if replicas > 1 else value


# ------------------------------------------------------------------ batches
def split_inputs(x):
    """Splits a batch's `x` into the model input and the side inputs.

    Args:
        x: The model input, or a dict `{"inputs": x, **side_inputs}`.

    Returns:
        `(inputs, side_inputs)`; `side_inputs` is `{}` for a plain input.

    Example:

    ```python
    inputs, side = split_inputs({"inputs": images, "index": positions})
    # inputs is images, side == {"index": positions}
    ```
    """
    if isinstance(x, dict) and SIDE_INPUTS_KEY in x:
        side = {k: v for k, v in x.items() if k != SIDE_INPUTS_KEY}
        return x[SIDE_INPUTS_KEY], side
    return x, {}


def integer_labels(y):
    """Labels `(batch, 1)` squeezed to `(batch,)`; other labels (and None) unchanged."""
    if y is None:
        return None
    if len(y.shape) == 2 and y.shape[-1] == 1:
        y = tf.squeeze(y, axis=-1)
    return y


# ------------------------------------------------------------------ weights
def as_weight(weight, name):
    """A weight as a trainer stores it.

    Args:
        weight: A float or int (stored in a new non-trainable float32
            `keras.Variable`), a `keras.Variable` (kept), or a
            `LearningRateSchedule` (kept; evaluated by `weight_value`).
        name: The variable's name (e.g. `"kd_weight"`).

    Returns:
        A `keras.Variable` or the schedule.

    Raises:
        TypeError: for any other type.
    """
    if isinstance(weight, (keras.optimizers.schedules.LearningRateSchedule, keras.Variable)):
        return weight
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        return keras.Variable(float(weight), trainable=False, dtype="float32", name=name)
    raise TypeError(
        f"Weight {name!r} must be a float, a keras.Variable or a "
        f"LearningRateSchedule, got {type(weight).__name__}.")


def weight_value(weight, optimizer=None):
    """A weight's float32 value now: a schedule at `optimizer.iterations` (0 without one)."""
    if isinstance(weight, keras.optimizers.schedules.LearningRateSchedule):
        step = optimizer.iterations if optimizer is not None else 0
        return ops.cast(weight(step), "float32")
    return ops.cast(weight, "float32")


def weight_config(weight):
    """A weight's config: a schedule's serialization, or the variable's current float."""
    if isinstance(weight, keras.optimizers.schedules.LearningRateSchedule):
        return keras.saving.serialize_keras_object(weight)
    return float(ops.convert_to_numpy(weight))


def weight_from_config(value):
    """Undoes `weight_config` (a schedule comes back as an object, a float as itself)."""
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


# -------------------------------------------------------------------- terms
def _is_single_term(losses):
    return isinstance(losses, (DistillationLoss, keras.losses.Loss)) or \
        hasattr(losses, "compute_loss")


def name_terms(losses):
    """Names every term and converts `keras.distillation` losses.

    Args:
        losses: One term, a list of terms, or a dict name -> term. A term is
            a `DistillationLoss`, a `keras.distillation` loss (converted by
            `keras_distill.losses.from_keras`) or a serialized term (dict).

    Returns:
        `(names, terms)`: unique names (a list's terms are named after
        `term.name`, a repeated name gets `_2`, `_3`, ...) and the terms.
    """
    if _is_single_term(losses):
        losses = [losses]
    if isinstance(losses, dict):
        items = list(losses.items())
    else:
        items = [(None, term) for term in (losses or [])]
    names, terms, seen = [], [], set()
    for given_name, term in items:
        if isinstance(term, dict):
            term = keras.saving.deserialize_keras_object(term)
        if not isinstance(term, DistillationLoss):
            term = from_keras(term)
        name = given_name or term.name
        base, index = name, 1
        while name in seen:
            index += 1
            name = f"{base}_{index}"
        seen.add(name)
        names.append(name)
        terms.append(term)
    return names, terms


def weights_by_position(weights, names):
    """One weight per name, from None (1.0 each), one weight, a list or a dict by name.

    Raises:
        ValueError: a dict naming an unknown term, or a list of another length.
    """
    if weights is None:
        return [1.0] * len(names)
    if isinstance(weights, dict):
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(
                f"distillation_loss_weights names {sorted(unknown)}, which are not "
                f"terms. Terms: {names}.")
        return [weights.get(n, 1.0) for n in names]
    if not isinstance(weights, (list, tuple)):
        weights = [weights]
    if len(weights) != len(names):
        raise ValueError(
            f"Got {len(weights)} distillation_loss_weights for {len(names)} "
            f"terms {names}: give one weight per term.")
    return list(weights)


class WeightedTerms:
    """Named distillation terms, one weight each, and the supervised loss's weight.

    The trainers compute `student_loss_weight * supervised + sum_i weight_i *
    term_i`; this object holds the names, terms and weights of that sum, the
    union of what the terms read, and the weights' config. It owns no
    network: a trainer tracks `variables` (assign them to a model attribute)
    and builds the terms.

    Args:
        losses: One term, a list of terms, or a dict name -> term (see
            `name_terms`).
        weights: One weight per term (a list, or a dict by name; a missing
            name weighs 1.0): a float, a `keras.Variable` or a
            `LearningRateSchedule`. Defaults to 1.0 each.
        student_loss_weight: Weight of the supervised loss; same types.

    Example:

    ```python
    weighted = WeightedTerms({"kd": KD(4.0), "fit": FitNet("stage2")}, [0.9, 100.0],
                             student_loss_weight=0.1)
    weighted.weight("kd").assign(0.5)  # what a VariableSchedule callback does
    total = weighted.value("kd", optimizer) * kd_value + ...
    ```
    """

    def __init__(self, losses, weights=None, student_loss_weight=1.0):
        self.names, self.terms = name_terms(losses)
        self.weights = {
            name: as_weight(weight, f"{name}_weight")
            for name, weight in zip(self.names, weights_by_position(weights, self.names))}
        self.student_loss_weight = as_weight(student_loss_weight, "student_loss_weight")
        self.view_names, self.views = self._name_views()

    def _name_views(self):
        """`{term name: view name or None}` and `{view name: view}`, one name per view object."""
        view_names, views = {}, {}
        for name, term in self.items():
            view = term.input_view
            if view is None:
                view_names[name] = None
                continue
            known = [key for key, other in views.items() if other is view]
            if known:
                view_names[name] = known[0]
                continue
            key, index = view.name, 1
            while key in views:
                index += 1
                key = f"{view.name}_{index}"
            views[key] = view
            view_names[name] = key
        return view_names, views

    # ------------------------------------------------------------ the set
    def __len__(self):
        return len(self.terms)

    def items(self):
        """`[(name, term), ...]` in order."""
        return list(zip(self.names, self.terms))

    def get(self, name):
        """The term named `name`.

        Raises:
            KeyError: naming the terms there are.
        """
        try:
            return self.terms[self.names.index(name)]
        except ValueError:
            raise KeyError(f"No term named {name!r}; terms: {self.names}") from None

    def weight(self, name):
        """The weight (variable or schedule) of term `name`."""
        return self.weights[name]

    def value(self, name, optimizer=None):
        """The float32 weight of term `name` now (see `weight_value`)."""
        return weight_value(self.weights[name], optimizer)

    def student_value(self, optimizer=None):
        """The float32 weight of the supervised loss now."""
        return weight_value(self.student_loss_weight, optimizer)

    @property
    def variables(self):
        """The weights that are variables, the terms' in order, then the supervised one."""
        weights = [*self.weights.values(), self.student_loss_weight]
        return [w for w in weights if isinstance(w, keras.Variable)]

    # ------------------------------------------------------- what they read
    @property
    def teacher_taps(self):
        """The teacher taps the terms read, in order, each once."""
        return list(dict.fromkeys(t for term in self.terms for t in term.teacher_taps))

    @property
    def student_taps(self):
        """The student taps the terms read, in order, each once."""
        return list(dict.fromkeys(t for term in self.terms for t in term.student_taps))

    def side_inputs(self, name):
        """The side inputs term `name` needs in the batch: its own and its view's."""
        term = self.get(name)
        view = term.input_view
        return tuple(dict.fromkeys(
            tuple(term.side_inputs) + tuple(getattr(view, "side_inputs", ()) if view else ())))

    @property
    def all_side_inputs(self):
        """The union of every term's `side_inputs`, in order."""
        return [key for key in dict.fromkeys(
            k for name in self.names for k in self.side_inputs(name))]

    # --------------------------------------------------------------- config
    def get_config(self):
        """The trainer-config entries of the terms and weights (schedules serialized)."""
        return {
            "distillation_losses": {
                n: keras.saving.serialize_keras_object(t) for n, t in self.items()},
            "distillation_loss_weights": {
                n: weight_config(self.weights[n]) for n in self.names},
            "student_loss_weight": weight_config(self.student_loss_weight),
        }

    @staticmethod
    def deserialize_weights(config):
        """A copy of a trainer config with the weights of `get_config` deserialized."""
        config = dict(config)
        config["distillation_loss_weights"] = {
            n: weight_from_config(w) for n, w in config["distillation_loss_weights"].items()}
        config["student_loss_weight"] = weight_from_config(config["student_loss_weight"])
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds the set from `get_config`'s entries."""
        config = cls.deserialize_weights(config)
        return cls(config["distillation_losses"], config["distillation_loss_weights"],
                   config["student_loss_weight"])
