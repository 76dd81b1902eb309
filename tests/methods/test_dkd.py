"""The `dkd` recipe builder (keras_distill/methods/dkd.py).

Moved from tests/losses/test_dkd.py (the maths of the term is tested there).
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill import methods
from keras_distill.losses.dkd import DKD
from keras_distill.methods.dkd import REFERENCE_BETA
from keras_distill.testing import (
    conv_net)


SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _context(teacher_name="t", student_name="s", epochs=240, steps=10, **options):
    return methods.MethodContext(
        teacher=conv_net(teacher_name, 4), student=conv_net(student_name, 4), num_classes=3,
        steps_per_epoch=steps, epochs=epochs, options=options)


def test_recipe_defaults_and_warmup():
    spec = methods.build("dkd", _context())
    term, weight = spec.terms[0], spec.weights[0]
    assert isinstance(term, DKD) and (term.alpha, term.beta, term.temperature) == (1.0, 8.0, 4.0)
    assert spec.student_loss_weight == 1.0
    assert isinstance(weight, kd.schedules.LinearWarmup)
    assert (weight.value, weight.warmup_steps) == (1.0, 200)  # 20 epochs x 10 steps
    # Short runs keep the reference's proportion (20 of 240 epochs): 24 epochs -> 2.
    assert methods.build("dkd", _context(epochs=24)).weights[0].warmup_steps == 20
    assert methods.build("dkd", _context(epochs=24, warmup_epochs="5")).weights[0] \
        .warmup_steps == 50
    overridden = methods.build("dkd", _context(beta="4", temperature="2")).terms[0]
    assert (overridden.beta, overridden.temperature) == (4.0, 2.0)


def test_recipe_uses_the_reference_beta_of_known_pairs():
    assert REFERENCE_BETA[("resnet56", "resnet20")] == 2.0
    assert methods.build("dkd", _context("resnet56", "resnet20")).terms[0].beta == 2.0
    assert methods.build("dkd", _context("wrn_40_2", "wrn_16_2")).terms[0].beta == 6.0
    assert methods.build("dkd", _context("resnet32x4", "resnet8x4")).terms[0].beta == 8.0


def test_recipe_trains_with_warmup_weight():
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 8)
    x, y = np.concatenate([x, x]), np.concatenate([y, y])  # the same batch twice
    context = _context(epochs=1, steps=2, warmup_epochs="100")  # weight 0 then 1/200
    spec = methods.build("dkd", context)
    distiller = kd.Distiller(context.teacher, context.student, spec.terms, spec.weights,
                             student_loss_weight=spec.student_loss_weight)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    logs = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history
    # Same weights both steps (lr 0); warm-up weights 0 and 1/200: mean 1/400 of dkd.
    assert logs["loss"][0] == pytest.approx(logs["student_loss"][0] + logs["dkd"][0] / 400,
                                            rel=1e-4)
