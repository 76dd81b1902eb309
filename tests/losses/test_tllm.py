"""TLLM through its recipe: ClassMask(KD) + CE and the UndistillableClasses callback.

Golden value (as in test_kd.py): teacher logits [1, 2, 3], student [3, 2, 1],
T = 4: T^2 KL(p || q) = 1.319632. TLLM's term (default mode "hard_label") is
`(1 - m[y]) * T^2 KL(p || q) + m[y] * CE(y, softmax(z_s))`: 1.319632 for an
unmasked label; for a masked (undistillable) label 1 the hard-label
cross-entropy -ln(e^2 / (e^3 + e^2 + e)) = 1.407606. In mode "drop" a masked
label gives exactly 0. The Distiller's own CE term is untouched.
"""


import numpy as np
import keras

import keras_distill as kd
from keras_distill.losses.combinators import ClassMask
from keras_distill.losses.tllm import tllm_term
from keras_distill.testing import (assert_replica_equivalence, build_term, conv_net,
                                   random_outputs, teacher_gradients)


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1)).astype("float32"), rng.integers(0, 3, n)


def test_no_gradient_reaches_the_teacher():
    teacher, student, labels = random_outputs(batch=6, num_classes=3, seed=1)
    term = build_term(tllm_term(3, initial_mask=[2]), teacher, student)
    t_grads, s_grads = teacher_gradients(term, teacher, student, labels)
    assert t_grads["logits"] is None
    assert np.abs(np.asarray(s_grads["logits"])).sum() > 0


def test_serialization_round_trip():
    term = tllm_term(5, temperature=2.0, mode="renormalize", initial_mask=[1, 4])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, ClassMask) and restored.mode == "renormalize"
    assert restored.term.temperature == 2.0 and restored.initial_mask == [0, 1, 0, 0, 1]


def test_one_and_two_replicas_agree():
    x, y = _data(16)

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        return kd.Distiller(teacher, student, [tllm_term(3, initial_mask=[1])], [0.9],
                            student_loss_weight=0.1)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["kd"][0] > 0
