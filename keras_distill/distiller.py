"""The Distiller: a `keras.Model` that trains a student against a frozen teacher."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_distill import checks, features
from keras_distill.terms import (
    SIDE_INPUTS_KEY,
    WeightedTerms,
    integer_labels,
    scale,
    split_inputs,
    unscale,
)

# A batch's side input holding precomputed teacher outputs (they replace the teacher's forward).
TEACHER_OUTPUTS_KEY = "teacher_outputs"

__all__ = ["Distiller", "SIDE_INPUTS_KEY", "TEACHER_OUTPUTS_KEY"]


@keras.saving.register_keras_serializable(package="keras_distill")
class Distiller(keras.Model):
    """Trains a student to imitate a frozen teacher with pluggable terms.

    Each step runs the teacher once in inference mode outside the gradient
    tape, the student ONCE in training mode (a multi-output view of the
    student returns its logits and every feature tap the terms declared),
    and minimises

        total = student_loss_weight * supervised(y, z_s)
                + sum_i weight_i * term_i(teacher, student, y)
                + regularization(student, adapters).

    Gradients flow into the student and the terms' adapters only. The
    supervised loss is the one given to `compile(loss=...)` (it may be
    omitted to distil without labels). `call()` returns the student's logits,
    so `evaluate`/`predict` describe the student.

    Batches are `(x, y)` or `(x, y, sample_weight)`. `x` is the model input,
    or a dict `{"inputs": x, **side_inputs}` carrying extra tensors some terms
    read (e.g. `"index"` for CRD, `"unlabeled"` for KD+, or
    `"teacher_outputs"`: precomputed teacher outputs that replace the
    teacher's forward pass).

    Args:
        teacher: Trained teacher `keras.Model` producing logits. Frozen.
        student: Student `keras.Model` producing logits.
        distillation_losses: A list of `DistillationLoss` terms, or a dict
            name -> term. `keras.distillation` loss objects are accepted and
            converted (see `keras_distill.losses.from_keras`).
        distillation_loss_weights: One weight per term (list, or dict by
            name): a float (stored as a variable that callbacks may
            `.assign()`), a `keras.Variable`, or a
            `keras.optimizers.schedules.LearningRateSchedule` evaluated at
            the optimizer's step. Defaults to 1.0 each.
        student_loss_weight: Weight of the supervised loss; same types.
            Independent of the distillation weights (no forced
            `alpha / 1 - alpha`).
        teacher_outputs: `"logits"` (default) or `"probabilities"` for a
            teacher ending in a softmax (e.g. a `keras.applications` model):
            its log-probabilities are then used as logits, which give the
            same softmax at every temperature. A network ending in a softmax
            is refused when logits are expected.
        name: Model name.
        **kwargs: `keras.Model` arguments.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher=teacher, student=student,
        distillation_losses=[keras_distill.losses.KD(temperature=4.0)],
        distillation_loss_weights=[0.9], student_loss_weight=0.1)
    distiller.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    distiller.fit(train_ds, validation_data=val_ds, epochs=3)
    distiller.student.save("student.keras")
    ```

    Reference:
        Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural
        Network". arXiv:1503.02531, 2015.
    """

    def __init__(
        self,
        teacher,
        student,
        distillation_losses,
        distillation_loss_weights=None,
        student_loss_weight=1.0,
        teacher_outputs="logits",
        name="distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if isinstance(teacher, dict):
            teacher = keras.saving.deserialize_keras_object(teacher)
        if isinstance(student, dict):
            student = keras.saving.deserialize_keras_object(student)
        for role, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, keras.Model):
                raise TypeError(
                    f"The {role} must be a keras.Model, got {type(model).__name__}. "
                    "Load a saved model with keras.saving.load_model first.")
        if teacher is student:
            raise ValueError(
                "teacher and student are the same model object; distillation "
                "needs a separate student (e.g. keras.models.clone_model(teacher)).")
        self.teacher = teacher
        self.student = student
        self.teacher.trainable = False

        self.weighted_terms = WeightedTerms(
            distillation_losses, distillation_loss_weights, student_loss_weight)
        self._weight_variables = self.weighted_terms.variables  # tracked: saved, checkpointed
        teacher_taps = self.weighted_terms.teacher_taps
        student_taps = self.weighted_terms.student_taps
        self._teacher_extractor = features.build_extractor(teacher, teacher_taps, "teacher")
        self._student_extractor = features.build_extractor(student, student_taps, "student")
        teacher_shapes = features.shapes(teacher, teacher_taps, "teacher")
        student_shapes = features.shapes(student, student_taps, "student")
        checks.check_compatible(teacher, student, teacher_shapes, student_shapes)
        checks.check_output_kind(teacher, "teacher", teacher_outputs)
        checks.check_output_kind(student, "student")
        self.teacher_outputs = teacher_outputs
        self._num_classes = (student_shapes.get("logits") or (None,))[-1]

        self.adapters = []
        self.term_state_variables = []
        for term in self.terms:
            if not term.built:
                term.build(teacher_shapes, student_shapes)
            self.adapters.extend(term.adapters)
            self.term_state_variables.extend(term.state_variables.values())
        self.views = dict(self.weighted_terms.views)  # name -> InputView (tracked layers)
        self.term_trackers = [keras.metrics.Mean(name=n) for n in self.term_names]
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.agreement_tracker = keras.metrics.Mean(name="agreement")
        self.built = True

    # ------------------------------------------------------------- accessors
    @property
    def term_names(self):
        """The terms' unique names, in order (each term's logs use its name)."""
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
        """The supervised loss's weight (`keras.Variable` or schedule)."""
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
        return self.student(inputs, training=training)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, refusing empty training data with a clear error.

        Keras 3.15 trains zero steps on an empty dataset and returns as if it
        had trained; this raises instead (before the first epoch when the size
        is known, else at the end of the first epoch, before other callbacks).
        """
        checks.check_not_empty(x)
        callbacks = kwargs.get("callbacks")
        if len(args) < 4 and (callbacks is None or isinstance(callbacks, (list, tuple))):
            kwargs["callbacks"] = [checks.RequireTrainingBatches(), *(callbacks or [])]
        return super().fit(x, y, *args, **kwargs)

    # ------------------------------------------------------------ train/test
    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, side = split_inputs(x)
        y = self._check_batch(inputs, y, side, training=True)
        views = self._make_views(inputs, integer_labels(y), side)
        teacher = self._teacher_outputs(inputs, views, side)  # (on the batch, {view: on it})
        with tf.GradientTape() as tape:
            student = self._forward(self._student_extractor, inputs, views, training=True)
            total, supervised, values = self._compute_losses(
                y, sample_weight, teacher, student, views, side, training=True)
            scaled = self.optimizer.scale_loss(total)
        self._apply_gradients(tape, scaled)
        return self._log(y, sample_weight, total, supervised, values, teacher[0], student[0])

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, side = split_inputs(x)
        y = self._check_batch(inputs, y, side, training=False)
        teacher = self._teacher_outputs(inputs, {}, side)
        student = self._forward(self._student_extractor, inputs, {}, training=False)
        total, supervised, values = self._compute_losses(
            y, sample_weight, teacher, student, {}, side, training=False)
        return self._log(y, sample_weight, total, supervised, values, teacher[0], student[0])

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    # ----------------------------------------------------------- step pieces
    def _check_batch(self, inputs, y, side, training):
        """The checks of `keras_distill.checks` on a batch; returns `y` (see there)."""
        checks.check_batch(self.weighted_terms, y, side, training=training,
                           supervised=self._compile_loss is not None)
        networks = {"student": self.student}
        if TEACHER_OUTPUTS_KEY not in side:
            networks["teacher"] = self.teacher
        reads_labels = self._compile_loss is not None or any(t.requires_labels for t in self.terms)
        return checks.check_step_inputs(
            inputs, y, networks, num_classes=self._num_classes if reads_labels else None,
            assert_labels=self.jit_compile is not True)

    def _make_views(self, inputs, labels, side):
        """`{view name: (view inputs, view labels or None, view sample weight or None)}`."""
        built = {}
        for name, view in self.views.items():
            models = {}  # views that craft inputs from a network declare it (e.g. BSS)
            if getattr(view, "needs_teacher", False):
                models["teacher"] = self.teacher
            if getattr(view, "needs_student", False):
                models["student"] = self.student
            result = tuple(view(inputs, labels, side, training=True, **models))
            built[name] = result + (None,) * (3 - len(result))
        return built

    def _forward(self, extractor, inputs, views, training, cached=None):
        """Runs one network on the batch and every view in ONE call; splits per view.

        Returns:
            `(outputs on the batch, {view name: outputs on the view})`; the
            outputs on the batch are `cached` when given (then not computed).
        """
        names = list(views)
        parts = ([] if cached is not None else [inputs]) + [views[n][0] for n in names]
        if not parts:
            return cached, {}
        joined = parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)
        outputs = extractor(joined, training=training)
        if len(parts) == 1:
            split = [outputs]
        else:
            sizes = [tf.shape(p)[0] for p in parts]
            pieces = {k: tf.split(v, sizes, axis=0) for k, v in outputs.items()}
            split = [{k: pieces[k][i] for k in outputs} for i in range(len(parts))]
        if cached is None:
            cached, split = split[0], split[1:]
        return cached, dict(zip(names, split))

    def _teacher_outputs(self, inputs, views, side):
        """The teacher's `_forward` in inference mode (or the batch's cached outputs), frozen."""
        cached = side.get(TEACHER_OUTPUTS_KEY)
        if cached is not None and not isinstance(cached, dict):
            cached = {"logits": cached}
        if cached is not None:
            checks.check_cached_teacher_outputs(cached, {"logits"} | {
                t for term in self.terms if term.input_view is None for t in term.teacher_taps})
        on_batch, on_views = self._forward(self._teacher_extractor, inputs, views,
                                           training=False, cached=cached)

        def frozen(outputs):
            if self.teacher_outputs == "probabilities":
                outputs = dict(outputs, logits=checks.probabilities_to_logits(outputs["logits"]))
            return {k: tf.stop_gradient(v) for k, v in outputs.items()}

        return frozen(on_batch), {name: frozen(o) for name, o in on_views.items()}

    def _compute_losses(self, y, sample_weight, teacher, student, views, side, training):
        """Returns (total, supervised, {term name: value}); all Keras-scaled.

        `teacher` and `student` are `(outputs on the batch, {view name: outputs})`.
        """
        supervised = None
        total = ops.zeros((), "float32")
        if self._compile_loss is not None and y is not None:
            supervised = ops.cast(self._compile_loss(y, student[0]["logits"], sample_weight),
                                  "float32")
            total = total + self.weighted_terms.student_value(self.optimizer) * supervised
        labels = integer_labels(y)
        values = {}
        for name, term in self.weighted_terms.items():
            view = self.weighted_terms.view_names[name]
            if not training and (view is not None or any(k not in side for k in term.side_inputs)):
                continue  # views are for training; validation batches may lack a side input
            if view is None:
                on_teacher, on_student = teacher[0], student[0]
                term_labels, weight = labels, sample_weight
            else:
                on_teacher, on_student = teacher[1][view], student[1][view]
                term_labels, weight = views[view][1:]
                if term_labels is None and term.requires_labels:
                    term_labels = tf.argmax(on_teacher["logits"], axis=-1)
            y_pred = {"teacher": on_teacher, "student": on_student,
                      "side_inputs": {k: side[k] for k in term.side_inputs},
                      "training": training}
            y_true = term_labels if (term.requires_labels and term_labels is not None) else 0.0
            values[name] = term(y_true, y_pred, sample_weight=weight)
            total = total + self.weighted_terms.value(name, self.optimizer) * values[name]
        regularization = [ops.cast(ops.sum(loss), "float32") for loss in self.losses]
        if regularization:
            total = total + scale(ops.sum(ops.stack(regularization)))
        return total, supervised, values

    def _apply_gradients(self, tape, scaled_loss):
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(gradients, variables) if g is not None])

    def _log(self, y, sample_weight, total, supervised, values, teacher, student):
        """Updates the metrics from a step (outputs on the batch); returns the logs."""
        teacher_logits, student_logits = teacher["logits"], student["logits"]
        batch_size = tf.shape(student_logits)[0]
        self._loss_tracker.update_state(unscale(total), sample_weight=batch_size)
        if supervised is not None:
            self.student_loss_tracker.update_state(unscale(supervised), sample_weight=batch_size)
        for name, tracker in zip(self.term_names, self.term_trackers):
            if name in values:
                tracker.update_state(unscale(values[name]), sample_weight=batch_size)
        agree = ops.cast(ops.equal(ops.argmax(teacher_logits, axis=-1),
                                   ops.argmax(student_logits, axis=-1)), "float32")
        self.agreement_tracker.update_state(agree)
        if self._compile_metrics is not None and y is not None:
            self._compile_metrics.update_state(y, student_logits, sample_weight=sample_weight)
        logs = self.get_metrics_result()
        for name in self.term_names:
            if name not in values:
                logs.pop(name, None)  # skipped by this step: see `get_metrics_result`
        for name, term in self.weighted_terms.items():
            for key, value in term.extra_metrics().items():
                logs[f"{name}_{key}"] = ops.cast(ops.convert_to_tensor(value), "float32")
        return logs

    def get_metrics_result(self):
        """The metrics' results, without the terms that were never computed since the reset.

        A term a step skips (one on a training-only view, or one reading a side
        input the validation batches do not carry) has no value to report: its
        never-updated tracker would read 0. Inside a traced step the step drops
        it (it knows statically which terms ran); outside, as Keras reads the
        results after an epoch or `evaluate`, a tracker that counted nothing is
        dropped, so both give the same keys and Keras keeps the aggregated results.
        """
        logs = super().get_metrics_result()
        if tf.executing_eagerly():
            for name, tracker in zip(self.term_names, self.term_trackers):
                if float(ops.convert_to_numpy(tracker.count)) == 0.0:
                    logs.pop(name, None)
        return logs

    # --------------------------------------------------------- serialization
    def get_config(self):
        return {
            "name": self.name,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            **self.weighted_terms.get_config(),
            "teacher_outputs": self.teacher_outputs,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**WeightedTerms.deserialize_weights(config))
