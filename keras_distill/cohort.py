"""Cohort: students trained together, each distilling from the others (DML, ...)."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf
from keras import ops

from keras_distill import checks, features
from keras_distill.losses.dml import DML
from keras_distill.terms import WeightedTerms, integer_labels, scale, split_inputs, unscale

ENSEMBLE = "ensemble"


def top1_accuracy(y_true, y_pred):
    """Top-1 accuracy for integer labels `(batch,)`/`(batch, 1)` or one-hot labels."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] \
            and (y_pred.shape[-1] or 0) > 1:
        return keras.metrics.categorical_accuracy(y_true, y_pred)
    return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)


def minimize(model, tape, scaled_loss):
    """One optimizer step of all of `model`'s trainable variables on `scaled_loss`."""
    variables = model.trainable_variables
    gradients = tape.gradient(scaled_loss, variables)
    model.optimizer.apply_gradients(
        [(g, v) for g, v in zip(gradients, variables) if g is not None])


@keras.saving.register_keras_serializable(package="keras_distill")
class Cohort(keras.Model):
    """Trains N students together; each distils from the others. No fixed teacher.

    Each step runs every member ONCE in training mode (one multi-output view
    per member returns its logits and the taps the terms declare) and
    minimises the sum over members of

        L_i = student_loss_weight * supervised(y, z_i)
              + sum_t weight_t * 1/(N-1) * sum_{j != i} term_t(teacher=sg(out_j), student=out_i)

    with ONE optimizer step over all members. Each term is an ordinary
    `DistillationLoss` called with the Distiller's convention: the peer `j`
    plays the teacher (its outputs under `stop_gradient`, so member `i`'s
    loss never moves `j`) and member `i` the student. Since member `j`'s
    weights receive gradient only from `L_j`, one tape over `sum_i L_i`
    gives every member exactly the gradient of its own loss (the
    simultaneous update of common DML implementations; the paper's
    Algorithm 1 updates the members one after the other).

    Logs `loss` (the sum), and per member `member{i}_loss`,
    `member{i}_student_loss`, `member{i}_{term}` (mean over peers) and
    `member{i}_accuracy`; metrics given to `compile` describe `call()`.

    Args:
        members: Two or more `keras.Model`s producing logits over the same
            classes (distinct objects; e.g. `keras.models.clone_model(student)`
            for a second, independently initialised copy).
        distillation_losses: Terms applied between every ordered pair of
            members (a list, or a dict name -> term). Default `[DML()]`.
            Terms with an `input_view` are not supported. One term object
            serves every pair, so a term with learned adapters needs members
            whose tapped features have equal shapes.
        distillation_loss_weights: One weight per term: a float (stored as a
            variable that callbacks may `.assign()`), a `keras.Variable` or a
            `LearningRateSchedule`. Defaults to 1.0 each.
        student_loss_weight: Weight of each member's supervised loss (the
            loss given to `compile`); same types.
        prediction: What `call()` (so `evaluate`/`predict`) returns: a member
            index (default 0: the member exported as the student) or
            `"ensemble"`: `log(mean_i softmax(z_i))`, logits whose softmax is
            the members' mean probability.
        name: Model name.
        **kwargs: `keras.Model` arguments.

    Example:

    ```python
    peer = keras.models.clone_model(student)
    cohort = keras_distill.Cohort([student, peer])  # DML, T = 1
    cohort.compile(optimizer="sgd",
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    cohort.fit(train_ds, epochs=3)  # logs member0_accuracy, member1_accuracy, ...
    cohort.student.save("student.keras")  # member 0
    ```

    Reference:
        Zhang, Xiang, Hospedales, Lu. "Deep Mutual Learning". CVPR 2018.
    """

    def __init__(self, members, distillation_losses=None, distillation_loss_weights=None,
                 student_loss_weight=1.0, prediction=0, name="cohort", **kwargs):
        super().__init__(name=name, **kwargs)
        members = [keras.saving.deserialize_keras_object(m) if isinstance(m, dict) else m
                   for m in (members or [])]
        if len(members) < 2:
            raise ValueError(
                f"A Cohort needs at least 2 members, got {len(members)}. Add a peer, "
                "e.g. keras.models.clone_model(student).")
        for index, member in enumerate(members):
            if not isinstance(member, keras.Model):
                raise TypeError(f"Cohort member {index} must be a keras.Model, got "
                                f"{type(member).__name__}.")
            if any(member is other for other in members[:index]):
                raise ValueError(
                    f"Cohort member {index} is the same object as an earlier member; each "
                    "member needs its own weights (use keras.models.clone_model).")
        if not (prediction == ENSEMBLE or
                (isinstance(prediction, int) and 0 <= prediction < len(members))):
            raise ValueError(f"prediction must be a member index in [0, {len(members)}) or "
                             f"'{ENSEMBLE}', got {prediction!r}.")
        self.members = list(members)
        self.prediction = prediction

        self.weighted_terms = WeightedTerms(
            [DML()] if distillation_losses is None else distillation_losses,
            distillation_loss_weights, student_loss_weight)
        for term_name, view in self.weighted_terms.view_names.items():
            if view is not None:
                raise ValueError(
                    f"Term {term_name!r} has an input_view; the Cohort computes terms on the "
                    "batch only. Use it in a Distiller, or drop its input_view.")
        self._weight_variables = self.weighted_terms.variables  # tracked: saved, checkpointed

        taps = [t for term in self.terms for t in term.teacher_taps + term.student_taps]
        roles = [f"cohort member {i}" for i in range(len(members))]
        self._extractors = [features.build_extractor(m, taps, r) for m, r in zip(members, roles)]
        shapes = [features.shapes(m, taps, r) for m, r in zip(members, roles)]
        self._check_compatible(shapes)
        self.adapters, self.term_state_variables = [], []
        for term in self.terms:
            if not term.built:
                term.build(shapes[1], shapes[0])
            self.adapters.extend(term.adapters)
            self.term_state_variables.extend(term.state_variables.values())
        self._check_adapter_shapes(shapes)

        self.student_loss_trackers, self.member_trackers = [], []
        self.accuracy_trackers, self.term_trackers = [], []
        for i in range(len(members)):
            self.member_trackers.append(keras.metrics.Mean(name=f"member{i}_loss"))
            self.student_loss_trackers.append(keras.metrics.Mean(name=f"member{i}_student_loss"))
            self.term_trackers.append(
                [keras.metrics.Mean(name=f"member{i}_{n}") for n in self.term_names])
            self.accuracy_trackers.append(
                keras.metrics.MeanMetricWrapper(top1_accuracy, name=f"member{i}_accuracy"))
        self.built = True

    def _check_compatible(self, shapes):
        classes = [s.get("logits")[-1] if s.get("logits") else None for s in shapes]
        if len({c for c in classes if c is not None}) > 1:
            raise ValueError(
                f"Cohort members predict different numbers of classes {classes}: "
                "mutual learning needs the same classes.")

    def _check_adapter_shapes(self, shapes):
        for term in self.terms:
            if not term.adapters:
                continue
            for tap in dict.fromkeys(term.teacher_taps + term.student_taps):
                seen = {tuple(s.get(tap) or ())[1:] for s in shapes if s.get(tap)}
                if len(seen) > 1:
                    raise ValueError(
                        f"Term {term.name!r} has learned adapters and reads tap {tap!r}, "
                        f"whose shape differs between members ({sorted(seen)}). One term "
                        "object serves every pair of members, so its adapters need "
                        "members with equal tapped shapes.")

    # ------------------------------------------------------------ accessors
    @property
    def student(self):
        """The member `call()` returns (member 0 when `prediction="ensemble"`)."""
        return self.members[0 if self.prediction == ENSEMBLE else self.prediction]

    @property
    def term_names(self):
        """The terms' unique names, in order."""
        return self.weighted_terms.names

    @property
    def terms(self):
        """The `DistillationLoss` terms, in the order of `term_names`."""
        return self.weighted_terms.terms

    @property
    def loss_weights_by_name(self):
        """Dict term name -> weight (`keras.Variable` or schedule)."""
        return self.weighted_terms.weights

    @property
    def student_loss_weight(self):
        """Each member's supervised loss weight (`keras.Variable` or schedule)."""
        return self.weighted_terms.student_loss_weight

    def get_term(self, name):
        """The term registered under `name`."""
        return self.weighted_terms.get(name)

    def loss_weight(self, name):
        """The weight (variable or schedule) of term `name`."""
        return self.weighted_terms.weight(name)

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=False):
        inputs, _ = split_inputs(inputs)
        if self.prediction == ENSEMBLE:
            return self._ensemble([m(inputs, training=training) for m in self.members])
        return self.members[self.prediction](inputs, training=training)

    def _ensemble(self, logits):
        log_probs = ops.stack([ops.log_softmax(ops.cast(z, "float32"), axis=-1) for z in logits])
        return ops.logsumexp(log_probs, axis=0) - ops.log(float(len(logits)))

    def _prediction(self, outputs):
        if self.prediction == ENSEMBLE:
            return self._ensemble([o["logits"] for o in outputs])
        return outputs[self.prediction]["logits"]

    # ---------------------------------------------------------------- losses
    def member_losses(self, x, y=None, sample_weight=None, training=True):
        """Each member's loss on a batch, as the train step computes it.

        Args:
            x: Inputs (or `{"inputs": x, **side_inputs}`).
            y: Labels, or None to distil without labels.
            sample_weight: Optional per-example weights.
            training: Run the members in training mode.

        Returns:
            A list of N scalars (Keras-scaled under a distribution strategy).
        """
        inputs, side = split_inputs(x)
        outputs = [extract(inputs, training=training) for extract in self._extractors]
        return self._compute_losses(outputs, y, sample_weight, side, training)[0]

    def _compute_losses(self, outputs, y, sample_weight, side, training):
        """Returns (member totals, supervised per member, {term: per member})."""
        labels = integer_labels(y)
        frozen = [{k: tf.stop_gradient(v) for k, v in o.items()} for o in outputs]
        peers = len(outputs) - 1
        totals, supervised, values = [], [], {n: [] for n in self.term_names}
        for i, own in enumerate(outputs):
            total = ops.zeros((), "float32")
            if self._compile_loss is not None and y is not None:
                sup = ops.cast(self._compile_loss(y, own["logits"], sample_weight), "float32")
                total = total + self.weighted_terms.student_value(self.optimizer) * sup
                supervised.append(sup)
            for name, term in self.weighted_terms.items():
                y_true = labels if term.requires_labels else 0.0
                value = ops.zeros((), "float32")
                for j, peer in enumerate(frozen):
                    if j != i:
                        value = value + term(y_true, {
                            "teacher": peer, "student": own,
                            "side_inputs": {k: side[k] for k in term.side_inputs},
                            "training": training}, sample_weight=sample_weight)
                value = value / peers
                values[name].append(value)
                total = total + self.weighted_terms.value(name, self.optimizer) * value
            totals.append(total)
        return totals, supervised, values

    def _total(self, totals):
        total = ops.sum(ops.stack(totals))
        regularization = [ops.cast(ops.sum(loss), "float32") for loss in self.losses]
        if regularization:
            total = total + scale(ops.sum(ops.stack(regularization)))
        return total

    # ------------------------------------------------------------ train/test
    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, side = split_inputs(x)
        checks.check_batch(self.weighted_terms, y, side, training=True,  # no term is skipped
                           supervised=self._compile_loss is not None)
        with tf.GradientTape() if training else contextlib.nullcontext() as tape:
            outputs = [extract(inputs, training=training) for extract in self._extractors]
            totals, supervised, values = self._compute_losses(
                outputs, y, sample_weight, side, training)
            total = self._total(totals)
            scaled = self.optimizer.scale_loss(total) if training else total
        if training:
            minimize(self, tape, scaled)
        return self._update_metrics(y, sample_weight, outputs, total, totals, supervised, values)

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _update_metrics(self, y, sample_weight, outputs, total, totals, supervised, values):
        batch_size = tf.shape(outputs[0]["logits"])[0]
        self._loss_tracker.update_state(unscale(total), sample_weight=batch_size)
        for i, output in enumerate(outputs):
            self.member_trackers[i].update_state(unscale(totals[i]), sample_weight=batch_size)
            if supervised:
                self.student_loss_trackers[i].update_state(
                    unscale(supervised[i]), sample_weight=batch_size)
            for name, tracker in zip(self.term_names, self.term_trackers[i]):
                tracker.update_state(unscale(values[name][i]), sample_weight=batch_size)
            if y is not None:
                self.accuracy_trackers[i].update_state(y, output["logits"], sample_weight)
        if self._compile_metrics is not None and y is not None:
            self._compile_metrics.update_state(y, self._prediction(outputs), sample_weight)
        return self.get_metrics_result()

    # --------------------------------------------------------- serialization
    def get_config(self):
        return {
            "name": self.name,
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
            **self.weighted_terms.get_config(),
            "prediction": self.prediction,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**WeightedTerms.deserialize_weights(config))
