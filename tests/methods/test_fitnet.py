"""The `fitnet` recipe builder (keras_distill/methods/fitnet.py).

Moved from tests/losses/test_fitnet.py (the maths of the term is tested there).
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill import methods
from keras_distill.losses.fitnet import FitNet
from keras_distill.losses.kd import KD
from keras_distill.testing import (
    conv_net)


SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _context(epochs=8, **options):
    return methods.MethodContext(
        teacher=conv_net("t", 8, seed=1), student=conv_net("s", 4, seed=2), num_classes=3,
        steps_per_epoch=2, epochs=epochs, teacher_taps=["stage1", "stage2"],
        student_taps=["stage1", "stage2"], options=options)


def test_recipe_defaults():
    spec = methods.build("fitnet", _context())
    term = spec.terms[0]
    assert isinstance(term, FitNet) and term.teacher_tap == term.student_tap == "stage1"
    assert spec.weights == [100.0] and spec.student_loss_weight == 1.0
    spec = methods.build("fitnet", methods.MethodContext(
        teacher=None, student=None, num_classes=3,
        teacher_taps=["stage1", "stage2", "stage3"], student_taps=["stage1", "stage2", "stage3"]))
    assert spec.terms[0].teacher_tap == "stage2"  # RepDistiller's hint_layer = 2
    spec = methods.build("fitnet", _context(student_tap="stage2", hint_weight="10"))
    assert spec.terms[0].student_tap == "stage2" and spec.weights == [10.0]


def test_two_stage_recipe_switches_from_hint_to_kd():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    context = _context(epochs=2, init_epochs="1")
    spec = methods.build("fitnet_two_stage", context)
    assert [type(t) for t in spec.terms] == [FitNet, KD]
    distiller = kd.Distiller(context.teacher, context.student, spec.terms, spec.weights,
                             student_loss_weight=spec.student_loss_weight)
    # lr 0: nothing moves, so only the phase weights change the logged total.
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    logs = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0,
                         callbacks=spec.callbacks).history
    assert logs["loss"][0] == pytest.approx(100.0 * logs["fitnet"][0], rel=1e-5)
    assert logs["loss"][1] == pytest.approx(0.1 * logs["student_loss"][1] + 0.9 * logs["kd"][1],
                                            rel=1e-5)
    assert methods.build("fitnet_two_stage", _context(epochs=240)).notes.startswith(
        "hint-only epochs [0, 30)")
