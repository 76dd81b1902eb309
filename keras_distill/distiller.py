"""The Distiller: a `keras.Model` that trains a student against a frozen teacher."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_distill import checks, features, multi_worker
from keras_distill.losses.base import DistillationLoss

SIDE_INPUTS_KEY = "inputs"
TEACHER_OUTPUTS_KEY = "teacher_outputs"


def _num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def _unscale(value):
    """Undoes Keras's 1/num_replicas loss scaling, for logging."""
    replicas = _num_replicas()
    return value * replicas if replicas > 1 else value


def _scale(value):
    replicas = _num_replicas()
    return value / replicas if replicas > 1 else value


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
        if multi_worker.is_multi_worker():  # stock Keras fit() fails with several workers
            multi_worker.enable()
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

        names, terms = self._normalise_terms(distillation_losses)
        self.term_names = names
        self.terms = terms  # list of DistillationLoss (not layers: not tracked)
        self.loss_weights_by_name = {}
        weights = self._normalise_weights(distillation_loss_weights, names)
        self._weight_variables = []
        for term_name, weight in zip(names, weights):
            self.loss_weights_by_name[term_name] = self._as_weight(weight, f"{term_name}_weight")
        self.student_loss_weight = self._as_weight(student_loss_weight, "student_loss_weight")

        teacher_taps = [t for term in terms for t in term.teacher_taps]
        student_taps = [t for term in terms for t in term.student_taps]
        self._teacher_extractor = features.build_extractor(teacher, teacher_taps, "teacher")
        self._student_extractor = features.build_extractor(student, student_taps, "student")
        teacher_shapes = self._shapes(teacher, teacher_taps, "teacher")
        student_shapes = self._shapes(student, student_taps, "student")
        self._check_compatible(teacher_shapes, student_shapes)
        checks.check_output_kind(teacher, "teacher", teacher_outputs)
        checks.check_output_kind(student, "student")
        self.teacher_outputs = teacher_outputs
        self._num_classes = (student_shapes.get("logits") or (None,))[-1]

        self.adapters = []
        self.term_state_variables = []
        views = []
        for term in terms:
            if not term.built:
                term.build(teacher_shapes, student_shapes)
            self.adapters.extend(term.adapters)
            self.term_state_variables.extend(term.state_variables.values())
            if term.input_view is not None and all(v is not term.input_view for v in views):
                views.append(term.input_view)
        self.views = views
        self.term_trackers = [keras.metrics.Mean(name=n) for n in names]
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.agreement_tracker = keras.metrics.Mean(name="agreement")
        self.built = True

    # ------------------------------------------------------------ construction
    @staticmethod
    def _normalise_terms(distillation_losses):
        from keras_distill.losses import from_keras

        if isinstance(distillation_losses, (DistillationLoss, keras.losses.Loss)) or \
                hasattr(distillation_losses, "compute_loss"):
            distillation_losses = [distillation_losses]
        if isinstance(distillation_losses, dict):
            items = list(distillation_losses.items())
        else:
            items = [(None, term) for term in (distillation_losses or [])]
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

    @staticmethod
    def _normalise_weights(weights, names):
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

    def _as_weight(self, weight, name):
        if isinstance(weight, keras.optimizers.schedules.LearningRateSchedule):
            return weight
        if isinstance(weight, keras.Variable):
            self._weight_variables.append(weight)
            return weight
        if isinstance(weight, (int, float)):
            variable = keras.Variable(float(weight), trainable=False, dtype="float32", name=name)
            self._weight_variables.append(variable)
            return variable
        raise TypeError(
            f"Weight {name!r} must be a float, a keras.Variable or a "
            f"LearningRateSchedule, got {type(weight).__name__}.")

    @staticmethod
    def _shapes(model, taps, role):
        if features.is_graph_model(model):
            return features.output_shapes(model, taps, role)
        return {"logits": None}

    def _check_compatible(self, teacher_shapes, student_shapes):
        t_logits, s_logits = teacher_shapes.get("logits"), student_shapes.get("logits")
        if t_logits and s_logits and t_logits[-1] != s_logits[-1]:
            raise ValueError(
                f"The teacher predicts {t_logits[-1]} classes but the student predicts "
                f"{s_logits[-1]}: distillation needs the same classes. Build the student "
                f"with num_classes={t_logits[-1]} (or give the teacher the student's head).")
        if features.is_graph_model(self.teacher) and features.is_graph_model(self.student):
            t_in = [tuple(i.shape[1:]) for i in self.teacher.inputs]
            s_in = [tuple(i.shape[1:]) for i in self.student.inputs]
            if len(t_in) != len(s_in) or any(
                    len(a) != len(b) or any(x is not None and y is not None and x != y
                                            for x, y in zip(a, b))
                    for a, b in zip(t_in, s_in)):
                raise ValueError(
                    f"The teacher takes inputs of shape {t_in} but the student takes "
                    f"{s_in}: both see the same batch. Resize inside one model (e.g. a "
                    "keras.layers.Resizing layer at its input) so both accept the data.")

    # ------------------------------------------------------------- accessors
    def get_term(self, name):
        """The term registered under `name`."""
        try:
            return self.terms[self.term_names.index(name)]
        except ValueError:
            raise KeyError(f"No term named {name!r}; terms: {self.term_names}") from None

    def loss_weight(self, name):
        """The weight (variable or schedule) of term `name`."""
        return self.loss_weights_by_name[name]

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=False):
        inputs, _ = self._split_inputs(inputs)
        return self.student(inputs, training=training)

    @staticmethod
    def _split_inputs(x):
        if isinstance(x, dict) and SIDE_INPUTS_KEY in x:
            side = {k: v for k, v in x.items() if k != SIDE_INPUTS_KEY}
            return x[SIDE_INPUTS_KEY], side
        return x, {}

    # ----------------------------------------------------------- step pieces
    def _check_batch(self, y, side, training):
        needs_labels = [n for n, t in zip(self.term_names, self.terms)
                        if t.requires_labels and t.input_view is None]
        if y is None and needs_labels:
            raise ValueError(
                f"Distillation term(s) {needs_labels} need integer labels, but the dataset "
                "yields no labels. Yield (inputs, labels) pairs, or use terms that need "
                "no labels.")
        if y is None and self._compile_loss is not None:
            raise ValueError(
                "compile() was given a supervised loss but the dataset yields no "
                "labels. Yield (inputs, labels) pairs, or compile without `loss=` to "
                "distil on unlabeled data.")
        if y is not None and needs_labels and len(y.shape) == 2 and y.shape[-1] not in (1, None):
            raise ValueError(
                f"Labels have shape {tuple(y.shape)} (one-hot or soft labels), but term(s) "
                f"{needs_labels} need integer class labels of shape (batch,). Convert with "
                "`np.argmax(labels, axis=-1)`, or keep soft labels only for the supervised "
                "loss and use terms that read no labels.")
        for name, term in zip(self.term_names, self.terms):
            wanted = set(term.side_inputs) | set(
                getattr(term.input_view, "side_inputs", ()) if term.input_view else ())
            missing = wanted - set(side)
            if missing and training:  # at evaluation such terms are skipped
                raise ValueError(
                    f"Term {name!r} reads side input(s) {sorted(missing)} that the batch "
                    f"does not carry (it has {sorted(side) or 'none'}). Yield batches as "
                    f"({{'inputs': x, {', '.join(repr(m) + ': ...' for m in sorted(missing))}}}, y).")

    def _check_step_inputs(self, inputs, y, side):
        """Input shapes (at trace time) and, outside XLA, label range (in the graph).

        Returns `y`, made to depend on the label check so no loss reads it first.
        """
        checks.check_inputs_fit(inputs, self.student, "student")
        if TEACHER_OUTPUTS_KEY not in side:
            checks.check_inputs_fit(inputs, self.teacher, "teacher")
        reads_labels = self._compile_loss is not None or any(t.requires_labels for t in self.terms)
        if y is not None and reads_labels and checks.labels_rank_is_sparse(y) and \
                (self._num_classes or 0) > 1 and self.jit_compile is not True:
            with tf.control_dependencies(
                    checks.assert_labels_in_range(self._integer_labels(y), self._num_classes)):
                y = tf.identity(y)
        return y

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

    @staticmethod
    def _integer_labels(y):
        if y is None:
            return None
        if len(y.shape) == 2 and y.shape[-1] == 1:
            y = tf.squeeze(y, axis=-1)
        return y

    def _make_views(self, inputs, labels, side, training):
        """Returns `[(view_inputs, view_labels, view_sample_weight_or_None), ...]`."""
        built = []
        for view in self.views:
            models = {}  # views that craft inputs from a network declare it (e.g. BSS)
            if getattr(view, "needs_teacher", False):
                models["teacher"] = self.teacher
            if getattr(view, "needs_student", False):
                models["student"] = self.student
            result = tuple(view(inputs, labels, side, training=training, **models))
            built.append(result + (None,) * (3 - len(result)))
        return built

    def _forward(self, extractor, inputs, view_batches, training, cached=None):
        """Runs one network on the batch and every view in ONE call; splits per view."""
        parts = [inputs] + [view[0] for view in view_batches]
        if cached is not None:
            parts = parts[1:]
        if not parts:
            return [cached]
        joined = parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)
        outputs = extractor(joined, training=training)
        if len(parts) == 1:
            split = [outputs]
        else:
            sizes = [tf.shape(p)[0] for p in parts]
            pieces = {k: tf.split(v, sizes, axis=0) for k, v in outputs.items()}
            split = [{k: pieces[k][i] for k in outputs} for i in range(len(parts))]
        return ([cached] if cached is not None else []) + split

    def _teacher_outputs(self, inputs, view_batches, side):
        cached = side.get(TEACHER_OUTPUTS_KEY)
        if cached is not None and not isinstance(cached, dict):
            cached = {"logits": cached}
        if cached is not None:
            needed = {"logits"} | {t for term in self.terms if term.input_view is None
                                   for t in term.teacher_taps}
            missing = needed - set(cached)
            if missing:
                raise ValueError(
                    f"The batch carries cached teacher outputs {sorted(cached)} but the terms "
                    f"also read {sorted(missing)}. Cache those taps too "
                    "(TeacherCache.compute(..., taps=...)) or train with the live teacher.")
        outputs = self._forward(self._teacher_extractor, inputs, view_batches,
                                training=False, cached=cached)
        if self.teacher_outputs == "probabilities":
            outputs = [dict(o, logits=checks.probabilities_to_logits(o["logits"]))
                       for o in outputs]
        return [{k: tf.stop_gradient(v) for k, v in o.items()} for o in outputs]

    def _compute_losses(self, y, sample_weight, teacher_outputs, student_outputs, view_batches,
                side, training):
        """Returns (total, supervised, {term name: value}); all Keras-scaled."""
        student_logits = student_outputs[0]["logits"]
        supervised = None
        total = ops.zeros((), "float32")
        if self._compile_loss is not None and y is not None:
            supervised = ops.cast(self._compile_loss(y, student_logits, sample_weight), "float32")
            total = total + self._weight_value(self.student_loss_weight) * supervised
        labels = self._integer_labels(y)
        values = {}
        for name, term in zip(self.term_names, self.terms):
            if not training and any(k not in side for k in term.side_inputs):
                continue  # e.g. CRD's "index": validation batches need not carry it
            if term.input_view is None:
                index, term_labels, weight = 0, labels, sample_weight
            else:
                if not training:
                    continue  # views are training-time inputs
                index = 1 + [id(v) for v in self.views].index(id(term.input_view))
                term_labels, weight = view_batches[index - 1][1:]
                if term_labels is None and term.requires_labels:
                    term_labels = tf.argmax(teacher_outputs[index]["logits"], axis=-1)
            y_pred = {
                "teacher": teacher_outputs[index],
                "student": student_outputs[index],
                "side_inputs": {k: side[k] for k in term.side_inputs},
            }
            y_true = term_labels if (term.requires_labels and term_labels is not None) else 0.0
            term.training = training
            value = term(y_true, y_pred, sample_weight=weight)
            values[name] = value
            total = total + self._weight_value(self.loss_weights_by_name[name]) * value
        regularization = [ops.cast(ops.sum(l), "float32") for l in self.losses]
        if regularization:
            total = total + _scale(ops.sum(ops.stack(regularization)))
        return total, supervised, values

    def _weight_value(self, weight):
        if isinstance(weight, keras.optimizers.schedules.LearningRateSchedule):
            step = self.optimizer.iterations if self.optimizer is not None else 0
            return ops.cast(weight(step), "float32")
        return ops.cast(weight, "float32")

    def _update_metrics(self, x, y, sample_weight, total, supervised, values,
                        teacher_logits, student_logits):
        batch_size = tf.shape(student_logits)[0]
        self._loss_tracker.update_state(_unscale(total), sample_weight=batch_size)
        if supervised is not None:
            self.student_loss_tracker.update_state(_unscale(supervised), sample_weight=batch_size)
        for name, tracker in zip(self.term_names, self.term_trackers):
            if name in values:
                tracker.update_state(_unscale(values[name]), sample_weight=batch_size)
        agree = ops.cast(ops.equal(ops.argmax(teacher_logits, axis=-1),
                                   ops.argmax(student_logits, axis=-1)), "float32")
        self.agreement_tracker.update_state(agree)
        if self._compile_metrics is not None and y is not None:
            self._compile_metrics.update_state(y, student_logits, sample_weight=sample_weight)
        logs = self.get_metrics_result()
        for name in self.term_names:
            if name not in values:
                logs.pop(name, None)  # skipped by this step: see `get_metrics_result`
        for name, term in zip(self.term_names, self.terms):
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

    # ------------------------------------------------------------ train/test
    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, side = self._split_inputs(x)
        self._check_batch(y, side, training=True)
        y = self._check_step_inputs(inputs, y, side)
        view_batches = self._make_views(inputs, self._integer_labels(y), side, training=True)
        teacher_outputs = self._teacher_outputs(inputs, view_batches, side)
        with tf.GradientTape() as tape:
            student_outputs = self._forward(self._student_extractor, inputs, view_batches,
                                            training=True)
            total, supervised, values = self._compute_losses(
                y, sample_weight, teacher_outputs, student_outputs, view_batches, side,
                training=True)
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        return self._update_metrics(x, y, sample_weight, total, supervised, values,
                                    teacher_outputs[0]["logits"], student_outputs[0]["logits"])

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, side = self._split_inputs(x)
        self._check_batch(y, side, training=False)
        y = self._check_step_inputs(inputs, y, side)
        teacher_outputs = self._teacher_outputs(inputs, [], side)
        student_outputs = self._forward(self._student_extractor, inputs, [], training=False)
        total, supervised, values = self._compute_losses(
            y, sample_weight, teacher_outputs, student_outputs, [], side, training=False)
        return self._update_metrics(x, y, sample_weight, total, supervised, values,
                                    teacher_outputs[0]["logits"], student_outputs[0]["logits"])

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    # --------------------------------------------------------- serialization
    @staticmethod
    def _weight_config(weight):
        """A weight's config: a schedule's serialization, or the variable's float."""
        if isinstance(weight, keras.optimizers.schedules.LearningRateSchedule):
            return keras.saving.serialize_keras_object(weight)
        return float(ops.convert_to_numpy(weight))

    @staticmethod
    def _weight_from_config(value):
        """Undoes `_weight_config` (a schedule comes back as an object)."""
        return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value

    def _terms_config(self):
        """Serialized terms and weights (shared with `Cohort.get_config`)."""
        weight_config = Distiller._weight_config
        return {
            "distillation_losses": {
                n: keras.saving.serialize_keras_object(t)
                for n, t in zip(self.term_names, self.terms)},
            "distillation_loss_weights": {
                n: weight_config(self.loss_weights_by_name[n]) for n in self.term_names},
            "student_loss_weight": weight_config(self.student_loss_weight),
        }

    @staticmethod
    def _deserialize_weights(config):
        """Undoes `_terms_config` for the weights (schedules come back as objects)."""
        config = dict(config)
        config["distillation_loss_weights"] = {
            n: Distiller._weight_from_config(w)
            for n, w in config["distillation_loss_weights"].items()}
        config["student_loss_weight"] = Distiller._weight_from_config(
            config["student_loss_weight"])
        return config

    def get_config(self):
        return {
            "name": self.name,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            **self._terms_config(),
            "teacher_outputs": self.teacher_outputs,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**cls._deserialize_weights(config))
