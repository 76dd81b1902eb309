"""The `attention_transfer` recipe builder (keras_distill/methods/attention_transfer.py).

Moved from tests/losses/test_attention_transfer.py (the maths of the term is tested there).
"""

import pytest

from keras_distill import methods
from keras_distill.losses.attention_transfer import AT


def test_recipe_defaults_and_overrides():
    context = methods.MethodContext(
        teacher=None, student=None, num_classes=3,
        teacher_taps=["stage1", "stage2", "stage3", "stage4"],
        student_taps=["stage1", "stage2", "stage3"])
    spec = methods.build("at", context)
    term = spec.terms[0]
    assert isinstance(term, AT) and term.p == 2.0
    # Every stage, paired from the first as the reference's zip.
    assert term.teacher_taps == term.student_taps == ("stage1", "stage2", "stage3")
    assert spec.weights == [1000.0] and spec.student_loss_weight == 1.0
    context.options = {"teacher_taps": "stage2+stage4", "student_taps": "stage2+stage3",
                       "at_weight": "500"}
    spec = methods.build("at", context)
    assert spec.terms[0].teacher_taps == ("stage2", "stage4")
    assert spec.terms[0].student_taps == ("stage2", "stage3") and spec.weights == [500.0]
    with pytest.raises(ValueError, match="stage taps are unknown"):
        methods.build("at", methods.MethodContext(teacher=None, student=None, num_classes=3))
