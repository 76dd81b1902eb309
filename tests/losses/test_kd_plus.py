"""KD+: KD on extra inputs built from the batch, and the generic "+".

Hand derivation of the golden value (the same numbers as test_kd.py): a
linear teacher with identity kernel and a linear student with the reversed
identity (anti-diagonal) kernel, no biases. On the unlabeled input
u = [1, 2, 3] the teacher's logits are [1, 2, 3] and the student's
[3, 2, 1]; at T = 4
    p = softmax([0.25, 0.5, 0.75]) = [0.254275, 0.326496, 0.419229],
    log p - log q = [-0.5, 0, 0.5],
    KL = 0.5 * (0.419229 - 0.254275) = 0.082477, T^2 KL = 1.319632.
On the labeled batch x = [1, 1, 1] both give [1, 1, 1]: KD = 0. So
`kd` = 0 and `kd_ood` = 1.319632, and the total with weights 0.9 / 0.9 / 0.1
is 0.1 * CE + 0.9 * 1.319632.
"""

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill.losses.kd import KD
from keras_distill.plus import make_view, plus
from keras_distill.testing import (conv_net, random_outputs,
                                   teacher_gradients, term_value)
from keras_distill.views import CutMix, Mixup, SideInput

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
GOLDEN = 1.319632


def _linear(name, kernel, recorder=None, dropout=False):
    inputs = keras.Input((3,))
    hidden = recorder(inputs) if recorder is not None else inputs
    if dropout:
        hidden = keras.layers.Dropout(0.5)(keras.layers.Dense(16, activation="relu")(hidden))
    layer = keras.layers.Dense(3, use_bias=False, name="logits")
    model = keras.Model(inputs, layer(hidden), name=name)
    if kernel is not None:
        layer.set_weights([np.asarray(kernel, "float32")])
    return model


class Recorder(keras.layers.Layer):
    """Identity that stores the last inputs it saw and its `training` flag."""

    def __init__(self, rows, **kwargs):
        super().__init__(**kwargs)
        self.seen = self.add_weight(shape=(rows, 3), initializer="zeros", trainable=False,
                                    name="seen")
        self.training_flag = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                             name="training_flag")
        self.enabled = True

    def call(self, inputs, training=None):
        if not self.enabled:
            return inputs
        self.seen.assign(inputs)
        self.training_flag.assign(1.0 if training else 0.0)
        return inputs


def test_plus_copies_the_term_onto_the_view():
    view = Mixup(alpha=1.0)
    term = plus(KD(temperature=3.0), view)
    assert isinstance(term, KD) and term.name == "kd_ood" and term.temperature == 3.0
    assert term.input_view is view
    # The maths is KD's: the golden value of test_kd.py on given outputs.
    value = term_value(plus(KD(4.0)), {"logits": np.array([[1.0, 2.0, 3.0]], "float32")},
                       {"logits": np.array([[3.0, 2.0, 1.0]], "float32")})
    assert value == pytest.approx(GOLDEN, abs=1e-5)


def test_golden_value_through_the_distiller_on_unlabeled_inputs():
    teacher = _linear("t", np.eye(3))
    student = _linear("s", np.eye(3)[::-1])
    kd_term = KD(4.0)
    distiller = kd.Distiller(teacher, student, [kd_term, plus(kd_term, SideInput("unlabeled"))],
                             [0.9, 0.9], student_loss_weight=0.1)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    x = np.ones((4, 3), "float32")
    u = np.tile(np.array([[1.0, 2.0, 3.0]], "float32"), (4, 1))
    data = tf.data.Dataset.from_tensor_slices(({"inputs": x, "unlabeled": u},
                                               np.zeros(4, "int64"))).batch(4)
    logs = distiller.fit(data, epochs=1, verbose=0).history
    assert logs["kd"][0] == pytest.approx(0.0, abs=1e-6)
    assert logs["kd_ood"][0] == pytest.approx(GOLDEN, abs=1e-5)
    assert logs["loss"][0] == pytest.approx(0.1 * logs["student_loss"][0] + 0.9 * GOLDEN,
                                            abs=1e-5)


def test_teacher_labels_the_mixed_inputs_in_inference_mode():
    batch, lam = 4, 0.25
    teacher_recorder, student_recorder = Recorder(2 * batch), Recorder(2 * batch)
    # Dropout: a teacher run in training mode would give other (random) logits.
    teacher = _linear("t", None, teacher_recorder, dropout=True)
    student = _linear("s", None, student_recorder)
    kd_term = KD(4.0)
    distiller = kd.Distiller(teacher, student,
                             [kd_term, plus(kd_term, Mixup(fixed_lambda=lam, seed=3))],
                             [0.9, 0.9], student_loss_weight=0.1)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    x = np.repeat(np.array([[0.0], [4.0], [8.0], [12.0]], "float32"), 3, axis=1)
    logs = distiller.fit(x, np.zeros(batch), batch_size=batch, epochs=1, verbose=0,
                         shuffle=False).history
    seen = np.asarray(teacher_recorder.seen)
    np.testing.assert_array_equal(seen[:batch], x)  # the batch, then the view, in one call
    np.testing.assert_array_equal(np.asarray(student_recorder.seen), seen)
    partners = []
    for i, row in enumerate(seen[batch:]):  # each view row is lam * x_i + (1 - lam) * x_j
        j = [j for j in range(batch) if np.allclose(row, lam * x[i] + (1 - lam) * x[j])]
        assert j, f"view row {i} is not a mix"
        partners.append(j[0])
    assert sorted(partners) == list(range(batch))
    assert float(teacher_recorder.training_flag) == 0.0
    assert float(student_recorder.training_flag) == 1.0
    # kd_ood is KD between the teacher in inference mode and the student on the view.
    view = seen[batch:]
    teacher_recorder.enabled = student_recorder.enabled = False
    expected = term_value(KD(4.0), {"logits": np.asarray(teacher(view, training=False))},
                          {"logits": np.asarray(student(view, training=False))})
    assert logs["kd_ood"][0] == pytest.approx(expected, rel=1e-5)


def test_extra_terms_are_zero_when_student_equals_teacher():
    teacher = conv_net("t", 4, batch_norm=False, seed=3)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    kd_term = KD(4.0)
    sources = ("mixup", "cutmix", "noise")
    terms = [kd_term] + [plus(kd_term, make_view(s, seed=i), name=f"kd_{s}")
                         for i, s in enumerate(sources)]
    distiller = kd.Distiller(teacher, student, terms, [0.9] * 4, student_loss_weight=0.1)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    logs = distiller.fit(x, np.zeros(16), batch_size=8, verbose=0).history
    for name in ("kd", "kd_mixup", "kd_cutmix", "kd_noise"):
        assert abs(logs[name][0]) < 1e-6, name


def test_no_gradient_reaches_the_teacher():
    teacher, student, _ = random_outputs(batch=4, num_classes=5, seed=2)
    t_grads, s_grads = teacher_gradients(plus(KD(4.0)), teacher, student)
    assert t_grads["logits"] is None
    assert np.abs(np.asarray(s_grads["logits"])).sum() > 0


def test_serialization_round_trip():
    term = plus(KD(3.0), CutMix(alpha=2.0, fixed_lambda=0.5, seed=4))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, KD) and restored.name == "kd_ood"
    assert restored.temperature == 3.0
    assert isinstance(restored.input_view, CutMix)
    assert restored.input_view.get_config() == term.input_view.get_config()
