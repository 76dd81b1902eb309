"""The `tang` recipe builder (keras_distill/methods/tang.py).

Moved from tests/losses/test_tang.py (the maths of the term is tested there).
"""


from keras_distill import methods
from keras_distill.losses.tang import MODES


def test_recipes():
    context = methods.MethodContext(teacher=None, student=None, num_classes=10)
    for mode in MODES:
        spec = methods.build(f"tang_{mode}", context)
        (term,) = spec.terms
        assert term.mode == mode and spec.weights == [0.9] and spec.student_loss_weight == 0.1
        assert term.temperature == (1.0 if mode == "label_smoothing" else 4.0)
        assert term.requires_labels == (mode != "full")
    context.options = {"mode": "top_k", "top_k": "2", "temperature": "3"}
    (term,) = methods.build("tang", context).terms
    assert (term.mode, term.top_k, term.temperature) == ("top_k", 2, 3.0)
