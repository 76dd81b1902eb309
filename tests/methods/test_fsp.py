"""The `fsp` recipe builder (keras_distill/methods/fsp.py).

Moved from tests/losses/test_fsp.py (the maths of the term is tested there).
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill import methods
from keras_distill.testing import (
    conv_net)


SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _context(epochs=2, **options):
    return methods.MethodContext(
        teacher=conv_net("t", 4, seed=1), student=conv_net("s", 4, seed=2), num_classes=3,
        steps_per_epoch=2, epochs=epochs, teacher_taps=["stage1", "stage2"],
        student_taps=["stage1", "stage2"], options=options)


def test_recipe_uses_the_stem_when_both_models_have_one():
    def with_stem(name):
        inputs = keras.Input((8, 8, 1))
        hidden = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
        hidden = keras.layers.Conv2D(4, 3, padding="same", name="stage1")(hidden)
        pooled = keras.layers.GlobalAveragePooling2D()(hidden)
        return keras.Model(inputs, keras.layers.Dense(3)(pooled), name=name)

    context = methods.MethodContext(teacher=with_stem("t"), student=with_stem("s"),
                                    num_classes=3, teacher_taps=["stage1"],
                                    student_taps=["stage1"])
    assert methods.build("fsp", context).terms[0].teacher_taps == ("stem", "stage1")
    assert methods.build("fsp", _context()).terms[0].teacher_taps == ("stage1", "stage2")


def test_recipe_aligns_channels_only_when_the_widths_differ():
    assert not methods.build("fsp", _context()).terms[0].align_channels
    context = _context()
    context.student = conv_net("narrow", 2, seed=2)
    spec = methods.build("fsp", context)
    assert spec.terms[0].align_channels and "aligned" in spec.notes
    context.options = {"align_channels": "false"}
    assert not methods.build("fsp", context).terms[0].align_channels


def test_recipe_modes():
    spec = methods.build("fsp", _context(mode="joint"))
    assert spec.weights == [50.0] and spec.student_loss_weight == 1.0 and not spec.callbacks
    with pytest.raises(ValueError, match="'two_stage' or 'joint'"):
        methods.build("fsp", _context(mode="both"))
    assert methods.build("fsp", _context(epochs=240)).notes.startswith(
        "FSP-only epochs [0, 30)")


def test_two_stage_recipe_trains_fsp_then_labels():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    context = _context(epochs=2, init_epochs="1")
    spec = methods.build("fsp", context)
    distiller = kd.Distiller(context.teacher, context.student, spec.terms, spec.weights,
                             student_loss_weight=spec.student_loss_weight)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    logs = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0,
                         callbacks=spec.callbacks).history
    assert logs["loss"][0] == pytest.approx(logs["fsp"][0], rel=1e-5)  # FSP only, weight 1
    assert logs["loss"][1] == pytest.approx(logs["student_loss"][1], rel=1e-5)  # CE only
