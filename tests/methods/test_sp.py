"""The `sp` recipe builder (keras_distill/methods/sp.py).

Moved from tests/losses/test_sp.py (the maths of the term is tested there).
"""


from keras_distill import methods


def test_recipe_uses_last_stages_and_weight_3000():
    context = methods.MethodContext(teacher=None, student=None, num_classes=10,
                                    teacher_taps=["stage1", "stage2", "stage3", "stage4"],
                                    student_taps=["stage1", "stage2", "stage3"])
    spec = methods.build("sp", context)
    (term,) = spec.terms
    assert (term.teacher_taps, term.student_taps) == (("stage4",), ("stage3",))
    assert spec.weights == [3000.0] and spec.student_loss_weight == 1.0
