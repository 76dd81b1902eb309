"""The `vid` recipe builder (keras_distill/methods/vid.py).

Moved from tests/losses/test_vid.py (the maths of the term is tested there).
"""



from keras_distill import methods
from keras_distill.losses.vid import VID


def test_recipe_defaults():
    context = methods.MethodContext(
        teacher=None, student=None, num_classes=3,
        teacher_taps=["stage1", "stage2", "stage3"], student_taps=["stage1", "stage2", "stage3"])
    spec = methods.build("vid", context)
    term = spec.terms[0]
    assert isinstance(term, VID) and term.teacher_taps == ("stage1", "stage2", "stage3")
    assert (term.init_variance, term.eps) == (5.0, 1e-5)
    assert spec.weights == [1.0] and spec.student_loss_weight == 1.0
    context.options = {"teacher_taps": "stage3", "student_taps": "stage2", "vid_weight": "2"}
    spec = methods.build("vid", context)
    assert spec.terms[0].student_taps == ("stage2",) and spec.weights == [2.0]
