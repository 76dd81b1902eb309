"""The `rkd` recipe builder (keras_distill/methods/rkd.py).

Moved from tests/losses/test_rkd.py (the maths of the term is tested there).
"""


from keras_distill import methods


def test_recipe_defaults_follow_repdistiller():
    context = methods.MethodContext(teacher=None, student=None, num_classes=10,
                                    options={"angle_weight": "10"})
    spec = methods.build("rkd", context)
    (term,) = spec.terms
    assert (term.distance_weight, term.angle_weight) == (25.0, 10.0)
    assert term.teacher_taps == ("embedding",)
    assert spec.weights == [1.0] and spec.student_loss_weight == 1.0
