"""The `pkt` recipe builder (keras_distill/methods/pkt.py).

Moved from tests/losses/test_pkt.py (the maths of the term is tested there).
"""


from keras_distill import methods


def test_recipe_defaults_follow_repdistiller():
    context = methods.MethodContext(teacher=None, student=None, num_classes=10)
    spec = methods.build("pkt", context)
    assert spec.terms[0].teacher_taps == ("embedding",)
    assert spec.weights == [30000.0] and spec.student_loss_weight == 1.0
