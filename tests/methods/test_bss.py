"""The `bss` recipe builder (keras_distill/methods/bss.py).

Moved from tests/losses/test_bss.py (the maths of the term is tested there).
"""


import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill import methods
from keras_distill.losses.bss import BSS
from keras_distill.methods.bss import reference_weights
from keras_distill.testing import conv_net


SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _np(value):
    return keras.ops.convert_to_numpy(value)


# --------------------------------------------------------------------- term
def _distiller_setup():
    teacher = conv_net("t", 8, seed=1)
    student = conv_net("s", 4, batch_norm=False, seed=2)
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    y = np.argmax(_np(teacher(x, training=False)), axis=-1)  # the teacher is right on every base
    return teacher, student, x, y


# ------------------------------------------------------------------- recipe
def test_reference_weight_schedule():
    # E = 80, T = 3, epoch 0 (e = 1): ratio = 1 + 3 (1 - 1/80) = 3.9625,
    # attack = 2 (1 - 4/240) = 1.9666667; divided by T^2 = 9.
    assert reference_weights(0, 80, 3.0) == pytest.approx((0.4402778, 0.2185185), abs=1e-6)
    # e = 60 = 0.75 E: the attack weight reaches 0; e = 80: ratio = 1.
    assert reference_weights(59, 80, 3.0)[1] == 0.0
    assert reference_weights(58, 80, 3.0)[1] == pytest.approx(2 * (1 - 236 / 240) / 9)
    assert reference_weights(79, 80, 3.0) == pytest.approx((1 / 9, 0.0))


def test_bss_recipe_schedules_weights_and_switches_the_attack_off():
    teacher, student, x, y = _distiller_setup()
    context = methods.MethodContext(teacher=teacher, student=student, num_classes=3, epochs=2,
                                    options={"attack_steps": "3", "sample_fraction": "0.5"})
    spec = methods.build("bss", context)
    kd_term, bss_term = spec.terms
    assert isinstance(bss_term, BSS) and bss_term.temperature == 3.0
    assert bss_term.input_view.num_steps == 3 and bss_term.input_view.sample_fraction == 0.5
    # epoch 0 of 2: ratio = 1 + 3 * 0.5 = 2.5, attack = 2 (1 - 2/3) = 2/3; / 9.
    assert spec.weights == pytest.approx([2.5 / 9, 2 / 27])
    distiller = kd.Distiller(teacher, student, spec.terms, spec.weights,
                             student_loss_weight=spec.student_loss_weight)
    distiller.compile(optimizer="sgd", loss=SCE)
    history = distiller.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=spec.callbacks)
    assert np.all(np.isfinite(history.history["bss"]))
    # epoch 1 of 2: ratio 1, attack 0 -> the attack is switched off.
    assert float(distiller.loss_weight("kd")) == pytest.approx(1 / 9)
    assert float(distiller.loss_weight("bss")) == 0.0
    assert float(bss_term.input_view.max_steps) == 0.0
    constant = methods.build("bss", methods.MethodContext(
        teacher=teacher, student=student, num_classes=3, options={"bss_weight": "0.5"}))
    assert constant.weights[1] == 0.5 and constant.callbacks == []
