"""The `dpk` recipe builder (keras_distill/methods/dpk.py).

Moved from tests/losses/test_dpk.py (the maths of the term is tested there).
"""

import pytest

import keras_distill as kd
from keras_distill import methods
from keras_distill.losses.kd import KD
from keras_distill.testing import (conv_net)


# ------------------------------------------------------------------ recipe
def test_recipe_defaults_and_options():
    teacher, student = conv_net("t", 8, stages=3), conv_net("s", 4, stages=3)
    taps = ["stage1", "stage2", "stage3"]
    spec = methods.build("dpk", methods.MethodContext(
        teacher, student, num_classes=3, teacher_taps=taps, student_taps=taps, seed=4))
    kd_term, dpk_term = spec.terms
    assert isinstance(kd_term, KD) and kd_term.temperature == 4.0
    assert dpk_term.teacher_taps == ("stage2", "stage3") and dpk_term.seed == 4
    assert (spec.weights, spec.student_loss_weight) == ([1.0, 1.0], 1.0)
    assert (dpk_term.momentum, dpk_term.initial_ratio, dpk_term.patch_size) == (0.9, 0.5, 4)
    options = {"teacher_taps": "stage1+stage3", "student_taps": "stage2+stage3", "patch_size": "2",
               "momentum": "1.0", "dpk_weight": "0.5", "width": "16"}
    spec = methods.build("dpk", methods.MethodContext(
        teacher, student, num_classes=3, teacher_taps=taps, student_taps=taps, options=options))
    term = spec.terms[1]
    assert term.teacher_taps == ("stage1", "stage3")
    assert term.student_taps == ("stage2", "stage3")
    assert (term.patch_size, term.momentum, term.width, spec.weights[1]) == (2, 1.0, 16, 0.5)
    kd.Distiller(teacher, student, spec.terms, spec.weights)  # builds
    spec = methods.build("dpk", methods.MethodContext(
        teacher, student, num_classes=3, teacher_taps=taps, student_taps=taps,
        options={"stages": "1"}))
    assert spec.terms[1].teacher_taps == ("stage3",) == spec.terms[1].student_taps
    with pytest.raises(ValueError, match=r"teacher_taps=stage2\+stage3"):
        methods.build("dpk", methods.MethodContext(teacher, student, num_classes=3))
