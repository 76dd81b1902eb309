"""NativeEnsemble: ONE, a student's head as several branches distilled from their gated ensemble."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf
from keras import ops

from keras_distill.cohort import minimize, top1_accuracy
from keras_distill.losses.kd import KD
from keras_distill.terms import (
    WeightedTerms,
    as_weight,
    scale,
    split_inputs,
    unscale,
    weight_config,
    weight_from_config,
    weight_value,
)


@keras.saving.register_keras_serializable(package="keras_distill")
class NativeEnsemble(keras.Model):
    """ONE (On-the-fly Native Ensemble): one student, several heads, no teacher.

    The student is cut at layer `split` into a shared trunk and a head. The
    head is copied into `branches - 1` more heads with their own weights
    (branch 0 is the student's own head, so the trained student is exactly
    `student`). A gate on the trunk's features,
    `g = softmax(relu(BN(W GAP(h))))`, weights the branches' logits into an
    ensemble `z_e = sum_i g_i z_i`, the teacher trained on the fly. Each step
    minimises

        L = w_ce * sum_i CE(y, z_i) + w_e * CE(y, z_e)
            + w_kd(t) * sum_i T^2 KL(softmax(sg(z_e) / T) || softmax(z_i / T))

    with one student forward through the trunk and every branch. The
    distillation target is under stop-gradient (as in the reference code),
    so only the CE on `z_e` trains the gate. Only branch 0 (the student) is
    deployed: the other branches and the gate exist during training only.

    Logs `loss`, `student_loss` (sum of the branches' CE), `ensemble_loss`,
    the term (`one`, summed over branches), `branch{i}_accuracy` and
    `ensemble_accuracy`; metrics given to `compile` describe `call()`, which
    returns the student's (branch 0's) logits.

    Args:
        student: A functional `keras.Model` producing logits.
        split: Name of the layer whose output the branches start from (its
            output must separate the trunk from the head: no connection
            from before it may reach a layer after it).
        branches: Number of branches `m` (default 3, the paper's).
        distillation_loss: The term between ensemble and each branch
            (default `KD(temperature=3.0)`, the reference's `T = 3`).
        distillation_loss_weight: `w_kd`: float, `keras.Variable` or
            `LearningRateSchedule` (e.g. `keras_distill.schedules.SigmoidRampUp`).
        student_loss_weight: `w_ce`, weight of each branch's supervised loss.
        ensemble_loss_weight: `w_e`, weight of the ensemble's supervised loss.
        name: Model name.
        **kwargs: `keras.Model` arguments.

    Example:

    ```python
    one = keras_distill.NativeEnsemble(student, split="stage2", branches=3)
    one.compile(optimizer="sgd",
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    one.fit(train_ds, epochs=3)  # logs branch0_accuracy, ensemble_accuracy, ...
    one.student.save("student.keras")
    ```

    Reference:
        Lan, Zhu, Gong. "Knowledge Distillation by On-the-Fly Native
        Ensemble". NeurIPS 2018.
    """

    def __init__(self, student, split, branches=3, distillation_loss=None,
                 distillation_loss_weight=1.0, student_loss_weight=1.0,
                 ensemble_loss_weight=1.0, name="native_ensemble", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(student, dict):
            student = keras.saving.deserialize_keras_object(student)
        if not isinstance(student, keras.Model) or not hasattr(student, "inputs") \
                or student.inputs is None:
            raise TypeError("NativeEnsemble needs a functional keras.Model student (built from "
                            f"keras.Input); got {type(student).__name__}.")
        if int(branches) < 2:
            raise ValueError(f"ONE needs branches >= 2, got {branches!r}.")
        self.student_model = student
        self.split = split
        self.num_branches = int(branches)
        self.trunk, head = self._cut(student, split)
        self.heads = [head] + [keras.models.clone_model(head) for _ in range(branches - 1)]
        for index, copy in enumerate(self.heads[1:], 1):
            copy.name = f"{student.name}_branch{index}"
        feature_shape = tuple(self.trunk.output.shape[1:])
        gate_input = keras.Input(feature_shape)
        pooled = (keras.layers.GlobalAveragePooling2D()(gate_input) if len(feature_shape) == 3
                  else keras.layers.Flatten()(gate_input))
        scores = keras.layers.Dense(self.num_branches, name="gate_dense")(pooled)
        # synchronized: the same statistics on 1 and N replicas (the batch is (batch, m))
        scores = keras.layers.BatchNormalization(synchronized=True, name="gate_bn")(scores)
        gates = keras.layers.Softmax(name="gate_softmax")(keras.layers.ReLU()(scores))
        self.gate = keras.Model(gate_input, gates, name=f"{student.name}_gate")

        if distillation_loss is None:
            distillation_loss = KD(temperature=3.0, name="one")
        if isinstance(distillation_loss, dict):  # named by its own name, as before a round trip
            distillation_loss = keras.saving.deserialize_keras_object(distillation_loss)
        self.weighted_terms = WeightedTerms({distillation_loss.name: distillation_loss},
                                            [distillation_loss_weight], student_loss_weight)
        (self.term,) = self.weighted_terms.terms
        if set(self.term.teacher_taps + self.term.student_taps) - {"logits"}:
            raise ValueError(f"ONE distils logits; term {self.term.name!r} reads taps "
                             f"{self.term.teacher_taps + self.term.student_taps}.")
        if self.term.requires_labels or self.term.side_inputs or self.term.input_view:
            raise ValueError(f"ONE's term must need no labels, side inputs or input view; "
                             f"{self.term.name!r} does.")
        if not self.term.built:
            classes = tuple(head.output.shape)
            self.term.build({"logits": classes}, {"logits": classes})
        self.ensemble_loss_weight = as_weight(ensemble_loss_weight, "ensemble_loss_weight")
        self._weight_variables = self.weighted_terms.variables + [  # tracked: checkpointed
            w for w in [self.ensemble_loss_weight] if isinstance(w, keras.Variable)]
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.ensemble_loss_tracker = keras.metrics.Mean(name="ensemble_loss")
        self.term_tracker = keras.metrics.Mean(name=self.term.name)
        self.branch_accuracy = [
            keras.metrics.MeanMetricWrapper(top1_accuracy, name=f"branch{i}_accuracy")
            for i in range(self.num_branches)]
        self.ensemble_accuracy = keras.metrics.MeanMetricWrapper(
            top1_accuracy, name="ensemble_accuracy")
        self.built = True

    @staticmethod
    def _cut(student, split):
        try:
            layer = student.get_layer(split)
        except ValueError as error:
            raise ValueError(
                f"ONE split {split!r} is not a layer of {student.name!r}; its layers are "
                f"{[layer.name for layer in student.layers]}.") from error
        try:
            inputs = student.inputs[0] if len(student.inputs) == 1 else student.inputs
            trunk = keras.Model(inputs, layer.output, name=f"{student.name}_trunk")
            head = keras.Model(layer.output, student.outputs[0], name=f"{student.name}_head")
        except Exception as error:  # noqa: BLE001  (Keras raises several types here)
            raise ValueError(
                f"The student cannot be cut at {split!r}: a connection from before it "
                f"reaches a layer after it ({error}). Choose a layer every path goes "
                "through, e.g. the output of a whole stage.") from error
        return trunk, head

    # ------------------------------------------------------------ accessors
    @property
    def student(self):
        """The deployed model: trunk + branch 0, i.e. the student given."""
        return self.student_model

    @property
    def distillation_loss_weight(self):
        """`w_kd`, the term's weight (`keras.Variable` or schedule)."""
        return self.weighted_terms.weight(self.weighted_terms.names[0])

    @property
    def student_loss_weight(self):
        """`w_ce`, each branch's supervised weight (`keras.Variable` or schedule)."""
        return self.weighted_terms.student_loss_weight

    def call(self, inputs, training=False):
        inputs, _ = split_inputs(inputs)
        return self.student_model(inputs, training=training)

    def branch_outputs(self, inputs, training=False):
        """`(branch logits list, gate weights (batch, m), ensemble logits)` on a batch."""
        features = self.trunk(inputs, training=training)
        logits = [ops.cast(head(features, training=training), "float32") for head in self.heads]
        gates = ops.cast(self.gate(features, training=training), "float32")
        ensemble = ops.sum(ops.stack(logits, axis=1) * gates[:, :, None], axis=1)
        return logits, gates, ensemble

    # ------------------------------------------------------------ train/test
    def _compute_losses(self, logits, ensemble, y, sample_weight, training):
        target = {"logits": tf.stop_gradient(ensemble)}
        term = ops.sum(ops.stack([
            self.term(0.0, {"teacher": target, "student": {"logits": z}, "side_inputs": {},
                            "training": training}, sample_weight=sample_weight)
            for z in logits]))
        supervised = ensemble_loss = ops.zeros((), "float32")
        if self._compile_loss is not None and y is not None:
            supervised = ops.sum(ops.stack([ops.cast(self._compile_loss(y, z, sample_weight),
                                                     "float32") for z in logits]))
            ensemble_loss = ops.cast(self._compile_loss(y, ensemble, sample_weight), "float32")
        total = (self.weighted_terms.student_value(self.optimizer) * supervised
                 + weight_value(self.ensemble_loss_weight, self.optimizer) * ensemble_loss
                 + weight_value(self.distillation_loss_weight, self.optimizer) * term)
        regularization = [ops.cast(ops.sum(loss), "float32") for loss in self.losses]
        if regularization:
            total = total + scale(ops.sum(ops.stack(regularization)))
        return total, supervised, ensemble_loss, term

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, _ = split_inputs(x)
        if y is None and self._compile_loss is not None:
            raise ValueError("compile() was given a supervised loss but the dataset yields no "
                             "labels. Yield (inputs, labels) pairs.")
        with tf.GradientTape() if training else contextlib.nullcontext() as tape:
            logits, _, ensemble = self.branch_outputs(inputs, training=training)
            total, supervised, ensemble_loss, term = self._compute_losses(
                logits, ensemble, y, sample_weight, training)
            scaled = self.optimizer.scale_loss(total) if training else total
        if training:
            minimize(self, tape, scaled)
        batch_size = tf.shape(logits[0])[0]
        self._loss_tracker.update_state(unscale(total), sample_weight=batch_size)
        self.student_loss_tracker.update_state(unscale(supervised), sample_weight=batch_size)
        self.ensemble_loss_tracker.update_state(unscale(ensemble_loss), sample_weight=batch_size)
        self.term_tracker.update_state(unscale(term), sample_weight=batch_size)
        if y is not None:
            for tracker, z in zip(self.branch_accuracy, logits):
                tracker.update_state(y, z, sample_weight)
            self.ensemble_accuracy.update_state(y, ensemble, sample_weight)
            if self._compile_metrics is not None:
                self._compile_metrics.update_state(y, logits[0], sample_weight)
        return self.get_metrics_result()

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    # --------------------------------------------------------- serialization
    def get_config(self):
        weight = weight_config
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student_model),
            "split": self.split, "branches": self.num_branches,
            "distillation_loss": keras.saving.serialize_keras_object(self.term),
            "distillation_loss_weight": weight(self.distillation_loss_weight),
            "student_loss_weight": weight(self.student_loss_weight),
            "ensemble_loss_weight": weight(self.ensemble_loss_weight),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("distillation_loss_weight", "student_loss_weight", "ensemble_loss_weight"):
            config[key] = weight_from_config(config[key])
        return cls(**config)
