"""BSS (Heo et al. 2019): the attack, the sample selection, the KD term on crafted samples.

Hand derivation of the attack on a LINEAR teacher z = W x with 2-D inputs and
class rows W_0 = [1, 0], W_1 = [0, 1], W_2 = [-1, -1]. One step moves x by
    dx = eta * (m + eps) * g / ||g||,  m = z_b - z_k (the margin),  g = W_k - W_b,
so the margin becomes m' = m - eta * ||g|| * (m + eps), exactly (linear model).

x = [2, 0]: z = [2, 0, -2], top-1 b = 0.
* target k = 1, g = [-1, 1], ||g|| = sqrt(2) = 1.4142136, m = 2, eps = 1e-4:
  eta = 0.3, 1 step: step length 0.3 * 2.0001 / sqrt(2) = 0.4242853,
      x' = [1.5757147, 0.4242853], m' = 2 - 0.3 * sqrt(2) * 2.0001 = 1.1514294.
  eta = 0.6: a = 0.6 * sqrt(2) = 0.8485 < 1, the margin never crosses 0:
      after 3 steps m + eps = (1 - a)^3 (2 + eps), m = 0.0068510.
* target k = 2, g = [-2, -1], ||g|| = sqrt(5), m = 4, eta = 0.6:
      m' = 4 - 0.6 * sqrt(5) * 4.0001 = -1.3666973 < 0: crossed after ONE step,
      x' = [2, 0] - (0.6 * 4.0001 / 5) [2, 1] = [-0.1466789, -1.0733395];
  the example then stops while the other one keeps going (per-example stop).
"""

import math

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill.losses.bss import BSS
from keras_distill.losses.kd import KD
from keras_distill.testing import assert_replica_equivalence, conv_net, teacher_gradients, \
    random_outputs, term_value
from keras_distill.views import BoundarySupportingSamples, Mixup

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
ROWS = [[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]  # kernel (inputs, classes): W_c as columns


def _linear(name, kernel=ROWS, bias=(0.0, 0.0, 0.0)):
    inputs = keras.Input((2,))
    logits = keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(kernel),
                                bias_initializer=keras.initializers.Constant(bias),
                                name="logits")(inputs)
    return keras.Model(inputs, logits, name=name)


def _np(value):
    return keras.ops.convert_to_numpy(value)


# ------------------------------------------------------------------- attack
def test_attack_golden_one_step():
    view = BoundarySupportingSamples(num_steps=1, step_size=0.3)
    crafted = _np(view.craft(_linear("t"), np.array([[2.0, 0.0]], "float32"),
                             np.array([0]), np.array([1])))
    np.testing.assert_allclose(crafted, [[1.5757147, 0.4242853]], atol=1e-6)
    z = crafted @ np.array(ROWS)
    assert z[0, 0] - z[0, 1] == pytest.approx(1.1514294, abs=1e-5)


def test_attack_stops_per_example_once_across_the_boundary():
    teacher = _linear("t")
    x = np.array([[2.0, 0.0], [2.0, 0.0]], "float32")
    source, target = np.array([0, 0]), np.array([1, 2])
    crafted = _np(BoundarySupportingSamples(num_steps=3, step_size=0.6).craft(
        teacher, x, source, target))
    z = crafted @ np.array(ROWS)
    # Example 0 never crosses (a < 1): 3 steps, margin (1 - 0.6 sqrt 2)^3 * 2.0001 - 1e-4.
    assert z[0, 0] - z[0, 1] == pytest.approx((1 - 0.6 * math.sqrt(2)) ** 3 * 2.0001 - 1e-4,
                                               abs=1e-5)
    assert z[0, 0] - z[0, 1] == pytest.approx(0.0068510, abs=1e-5)
    # Example 1 crossed at step 1 and was not moved again.
    np.testing.assert_allclose(crafted[1], [-0.1466789, -1.0733395], atol=1e-5)
    assert z[1, 0] - z[1, 2] == pytest.approx(-1.3666973, abs=1e-5)
    assert np.argmax(z[1]) == 2


def test_crafted_samples_move_toward_the_boundary_of_a_conv_teacher():
    teacher = conv_net("t", 8, seed=1)
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    logits = _np(teacher(x, training=False))
    order = np.argsort(-logits, axis=-1)
    source, target = order[:, 0], order[:, 1]
    crafted = BoundarySupportingSamples(num_steps=3, step_size=0.3).craft(
        teacher, x, source, target)
    after = _np(teacher(crafted, training=False))
    rows = np.arange(16)
    before_margin = logits[rows, source] - logits[rows, target]
    after_margin = after[rows, source] - after[rows, target]
    assert np.all(after_margin < before_margin)
    assert np.abs(_np(crafted) - x).max() > 0


def test_zero_max_steps_returns_the_bases_unchanged():
    view = BoundarySupportingSamples(num_steps=5)
    view.max_steps.assign(0.0)  # what the recipe's callback does once the BSS weight is 0
    x = np.array([[2.0, 0.0]], "float32")
    np.testing.assert_array_equal(_np(view.craft(_linear("t"), x, np.array([0]), np.array([1]))),
                                  x)


# ---------------------------------------------------------------- selection
# e0 = [2, 0] y=0, e1 = [0, 2] y=1, e2 = [-1, -1] y=2, e3 = [2, 0] y=1.
# Teacher (ROWS): top-1 = 0, 1, 2, 0 -> e3 is wrong.  Student: ROWS / 2 with
# bias [0, 0, -3]: z(e2) = [-0.5, -0.5, -2] -> top-1 0, wrong on e2.
X4 = np.array([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [2.0, 0.0]], "float32")
Y4 = np.array([0, 1, 2, 1])


def _student():
    return _linear("s", kernel=np.array(ROWS) / 2, bias=(0.0, 0.0, -3.0))


def _score(teacher_logits, student_logits, labels):
    diff = (_np(keras.ops.softmax(teacher_logits)) - _np(keras.ops.softmax(student_logits))) ** 2
    return diff.sum(-1) - diff[np.arange(len(labels)), labels]


def test_selection_keeps_bases_both_classify_correctly_ranked_by_disagreement():
    teacher, student = _linear("t"), _student()
    view = BoundarySupportingSamples(num_steps=0, sample_fraction=1.0)
    crafted, labels, weights = view(X4, Y4, {}, teacher=teacher, student=student)
    assert labels is None
    scores = _score(X4 @ np.array(ROWS), _np(student(X4)), Y4)
    first = [0, 1] if scores[0] >= scores[1] else [1, 0]
    np.testing.assert_array_equal(_np(weights), [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(_np(crafted), X4[first + [2, 3]])
    # Half the batch: ceil(0.5 * 4) = 2 slots, both eligible.
    half = BoundarySupportingSamples(num_steps=0, sample_fraction=0.5)
    crafted, _, weights = half(X4, Y4, {}, teacher=teacher, student=student)
    np.testing.assert_array_equal(_np(weights), [1.0, 1.0])
    np.testing.assert_array_equal(_np(crafted), X4[first])


def test_selection_without_student_or_labels():
    teacher = _linear("t")
    view = BoundarySupportingSamples(num_steps=0, sample_fraction=1.0, select_by_student=False,
                                     seed=1)
    assert view.needs_student is False
    crafted, _, weights = view(X4, Y4, {}, teacher=teacher)
    np.testing.assert_array_equal(_np(weights), [1.0, 1.0, 1.0, 0.0])  # only e3 is wrong
    np.testing.assert_array_equal(_np(crafted)[3], X4[3])
    _, _, weights = view(X4, None, {}, teacher=teacher)  # no labels: the teacher's own class
    np.testing.assert_array_equal(_np(weights), [1.0] * 4)


def test_target_classes_sampled_from_the_teacher_without_its_top_class():
    # Source 0; the other classes' probabilities are proportional to [1, 2, 3].
    logits = np.tile(np.log([[50.0, 1.0, 2.0, 3.0]]).astype("float32"), (6000, 1))
    source = np.zeros(6000, "int32")
    drawn = _np(BoundarySupportingSamples(seed=3).target_classes(logits, source))
    frequencies = np.bincount(drawn, minlength=4) / 6000
    np.testing.assert_allclose(frequencies, [0.0, 1 / 6, 2 / 6, 3 / 6], atol=0.025)
    second = BoundarySupportingSamples(target_class="second").target_classes(logits[:2], source[:2])
    np.testing.assert_array_equal(_np(second), [3, 3])


# --------------------------------------------------------------------- term
def _distiller_setup():
    teacher = conv_net("t", 8, seed=1)
    student = conv_net("s", 4, batch_norm=False, seed=2)
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    y = np.argmax(_np(teacher(x, training=False)), axis=-1)  # the teacher is right on every base
    return teacher, student, x, y


def test_term_is_kd_on_the_crafted_batch():
    # Linear networks: sizeable logits, so the attack visibly changes the KD value.
    teacher = _linear("t")
    student = _linear("s", kernel=[[0.5, 0.2, -1.0], [0.3, 1.2, -0.4]], bias=(0.1, 0.0, -0.2))
    x = np.random.default_rng(0).normal(size=(8, 2)).astype("float32") * 2
    y = np.argmax(x @ np.array(ROWS), axis=-1)  # the teacher is right on every base

    def view():
        return BoundarySupportingSamples(sample_fraction=1.0, target_class="second",
                                         select_by_student=False, step_size=0.6, seed=0)

    distiller = kd.Distiller(teacher, student, [BSS(3.0, input_view=view())], [1.0],
                             student_loss_weight=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    logged = distiller.fit(x, y, batch_size=8, verbose=0).history["bss"][0]

    crafted, _, weights = view()(x, y, {}, teacher=teacher)
    np.testing.assert_array_equal(_np(weights), np.ones(8))
    direct = term_value(KD(3.0), {"logits": teacher(crafted, training=False)},
                        {"logits": student(crafted, training=True)}, sample_weight=weights)
    assert logged == pytest.approx(direct, rel=1e-4)
    on_batch = term_value(KD(3.0), {"logits": teacher(x, training=False)},
                          {"logits": student(x, training=True)})
    assert abs(direct - on_batch) > 0.05 * on_batch  # the samples really moved


def test_no_gradient_reaches_the_teacher_through_the_attack():
    teacher, student, x, y = _distiller_setup()
    view = BoundarySupportingSamples(sample_fraction=1.0, target_class="second",
                                     select_by_student=False)
    teacher_variables = [w.value for w in teacher.weights]  # frozen: watched explicitly
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(teacher_variables)
        crafted, _, weights = view(x, y, {}, teacher=teacher)  # depends on teacher weights
        value = BSS(3.0, input_view=view)(0.0, {
            "teacher": {"logits": tf.stop_gradient(teacher(crafted))},
            "student": {"logits": student(crafted, training=True)}}, sample_weight=weights)
    assert all(g is None for g in tape.gradient(value, teacher_variables))
    student_grads = tape.gradient(value, student.trainable_variables)
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in student_grads)
    # The term alone: KD's contract (no teacher gradient, a student gradient).
    t_grads, s_grads = teacher_gradients(BSS(3.0), *random_outputs(batch=4, num_classes=5)[:2])
    assert t_grads["logits"] is None and float(tf.reduce_max(tf.abs(s_grads["logits"]))) > 0


def test_teacher_weights_unchanged_by_training():
    teacher, student, x, y = _distiller_setup()
    before = [w.copy() for w in teacher.get_weights()]
    distiller = kd.Distiller(teacher, student, [KD(3.0), BSS(3.0)], [0.4, 0.2])
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), loss=SCE)
    distiller.fit(x, y, batch_size=4, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_one_and_two_replicas_give_the_same_losses_and_weights():
    _, _, x, y = _distiller_setup()
    x, y = np.concatenate([x, x[::-1]]), np.concatenate([y, y[::-1]])

    def make():
        view = BoundarySupportingSamples(sample_fraction=1.0, target_class="second",
                                         select_by_student=False, seed=0)
        return kd.Distiller(conv_net("t", 8, seed=1), conv_net("s", 4, batch_norm=False, seed=2),
                            [KD(3.0), BSS(3.0, input_view=view)], [0.4, 0.2],
                            student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["bss"][0] > 0


# ------------------------------------------------------------ serialization
def test_serialization_round_trip():
    view = BoundarySupportingSamples(num_steps=4, step_size=0.2, epsilon=1e-3,
                                     sample_fraction=0.5, target_class="second",
                                     select_by_student=False, clip_range=(-2.5, 2.5), seed=7)
    term = BSS(temperature=2.0, input_view=view, name="boundary")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, BSS) and restored.temperature == 2.0
    assert restored.name == "boundary"
    restored_view = restored.input_view
    assert isinstance(restored_view, BoundarySupportingSamples)
    for key in ("num_steps", "step_size", "epsilon", "sample_fraction", "target_class",
                "select_by_student", "clip_range", "seed"):
        assert getattr(restored_view, key) == getattr(view, key), key
    teacher, student, _ = random_outputs(batch=3, num_classes=4)
    assert term_value(restored, teacher, student) == \
        pytest.approx(term_value(term, teacher, student))


# ------------------------------------------------------------------- errors
def test_bad_arguments_are_refused_with_clear_messages():
    with pytest.raises(ValueError, match="attacks the teacher: call it with teacher="):
        BoundarySupportingSamples()(X4, Y4, {})
    with pytest.raises(ValueError, match="BSS needs a view that attacks the teacher.*Mixup"):
        BSS(input_view=Mixup())
    with pytest.raises(ValueError, match="sample_fraction must be in \\(0, 1\\]"):
        BoundarySupportingSamples(sample_fraction=0.0)
    with pytest.raises(ValueError, match="target_class must be one of"):
        BoundarySupportingSamples(target_class="third")
    with pytest.raises(ValueError, match="num_steps must be an integer >= 0"):
        BoundarySupportingSamples(num_steps=-1)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        BoundarySupportingSamples(step_size=0.0)
    with pytest.raises(ValueError, match="clip_range must be \\(min, max\\)"):
        BoundarySupportingSamples(clip_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="KD temperature must be > 0"):
        BSS(temperature=0.0)
