"""The `cc` recipe builder (keras_distill/methods/cc.py).

Moved from tests/losses/test_cc.py (the maths of the term is tested there).
"""



from keras_distill import methods


def test_recipe_defaults_and_optional_kd():
    context = methods.MethodContext(teacher=None, student=None, num_classes=10)
    spec = methods.build("cc", context)
    (term,) = spec.terms
    assert (term.gamma, term.order, term.embed_dim) == (0.4, 2, None)
    assert spec.weights == [100.0] and spec.student_loss_weight == 1.0
    context.options = {"kd_weight": "0.9", "embed_dim": "128"}
    spec = methods.build("cc", context)
    assert [t.name for t in spec.terms] == ["cc", "kd"] and spec.weights == [100.0, 0.9]
    assert spec.terms[0].embed_dim == 128
