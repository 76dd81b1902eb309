"""ClassMask: a per-class mask around any term (the TLLM mechanism)."""

import numpy as np
import keras
import pytest

from keras_distill import losses
from keras_distill.testing import build_term, random_outputs, term_value


def _per_example(term, teacher, student, labels):
    return np.array([term_value(term, {k: v[i:i + 1] for k, v in teacher.items()},
                                {k: v[i:i + 1] for k, v in student.items()}, labels[i:i + 1])
                     for i in range(len(labels))])


def test_drop_zeroes_masked_class_samples_only():
    teacher, student, _ = random_outputs(batch=6, num_classes=4, seed=3)
    labels = np.array([0, 1, 2, 3, 1, 0])
    plain = _per_example(losses.KD(4.0), teacher, student, labels)
    masked = build_term(losses.ClassMask(losses.KD(4.0), num_classes=4, initial_mask=[1]),
                        teacher, student)
    values = _per_example(masked, teacher, student, labels)
    is_masked = labels == 1
    assert np.all(values[is_masked] == 0.0)
    np.testing.assert_allclose(values[~is_masked], plain[~is_masked], rtol=1e-6)
    # The mask is a variable a callback assigns: unmasking restores plain KD.
    masked.class_mask.assign(np.zeros(4, "float32"))
    np.testing.assert_allclose(_per_example(masked, teacher, student, labels), plain, rtol=1e-6)


def test_renormalize_removes_masked_classes_from_teacher():
    teacher = {"logits": np.array([[2.0, 1.0, 0.0]], "float32")}
    student = {"logits": np.array([[0.0, 1.0, 2.0]], "float32")}
    term = build_term(losses.ClassMask(losses.KD(1.0), 3, mode="renormalize",
                                       initial_mask=[2]), teacher, student)
    # Label 0 is not masked; class 2 is removed from the teacher: p = softmax([2, 1]) on {0, 1}.
    p = np.exp([2.0, 1.0]) / np.exp([2.0, 1.0]).sum()
    log_q = np.array([0.0, 1.0, 2.0]) - np.log(np.exp([0.0, 1.0, 2.0]).sum())
    expected = float(np.sum(p * (np.log(p) - log_q[:2])))
    assert term_value(term, teacher, student, np.array([0])) == pytest.approx(expected, rel=1e-4)


def test_one_hot_replaces_target_for_masked_samples():
    teacher = {"logits": np.array([[2.0, 1.0, 0.0]], "float32")}
    student = {"logits": np.array([[0.0, 1.0, 2.0]], "float32")}
    term = build_term(losses.ClassMask(losses.KD(1.0), 3, mode="one_hot", initial_mask=[1]),
                      teacher, student)
    # Label 1 is masked: the target is one-hot(1), KL = -log q_1.
    log_q = np.array([0.0, 1.0, 2.0]) - np.log(np.exp([0.0, 1.0, 2.0]).sum())
    assert term_value(term, teacher, student, np.array([1])) == pytest.approx(-log_q[1], rel=1e-4)


def test_hard_label_gives_masked_samples_the_cross_entropy_instead():
    """Teacher [1, 2, 3], student [3, 2, 1], T = 4: KD = 1.319632 (tests/losses/test_kd.py).
    Label 0 masked: CE(0, softmax([3, 2, 1])) = -ln(e^3 / (e^3 + e^2 + e)) = 0.407606;
    label 1 not masked: the KD value, unchanged."""
    teacher = {"logits": np.array([[1.0, 2.0, 3.0]] * 2, "float32")}
    student = {"logits": np.array([[3.0, 2.0, 1.0]] * 2, "float32")}
    term = build_term(losses.ClassMask(losses.KD(4.0), 3, mode="hard_label", initial_mask=[0]),
                      teacher, student)
    np.testing.assert_allclose(_per_example(term, teacher, student, np.array([0, 1])),
                               [0.407606, 1.319632], atol=1e-5)
    # a feature term gains the logits tap it needs for the cross-entropy
    feature = losses.ClassMask(losses.FitNet(teacher_tap="stage1", student_tap="stage1"), 3,
                               mode="hard_label")
    assert "logits" in feature.student_taps and "stage1" in feature.student_taps


def test_serialization_and_bad_mode():
    term = losses.ClassMask(losses.KD(2.0), 5, mode="drop", initial_mask=[0, 3])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert restored.initial_mask == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert restored.term.temperature == 2.0
    with pytest.raises(ValueError, match="mode must be one of"):
        losses.ClassMask(losses.KD(), 5, mode="zero")
    with pytest.raises(ValueError, match="outside"):
        losses.ClassMask(losses.KD(), 5, initial_mask=[7])
