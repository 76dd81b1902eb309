"""The `crd` recipe builder (keras_distill/methods/crd.py).

Moved from tests/losses/test_crd.py (the maths of the term is tested there).
"""


import pytest

from keras_distill import methods


def test_recipe_follows_repdistiller_and_sizes_banks_from_the_context():
    context = methods.MethodContext(teacher=None, student=None, num_classes=100,
                                    num_train_examples=50000, seed=3)
    spec = methods.build("crd", context)
    (term,) = spec.terms
    assert (term.num_examples, term.feature_dim, term.num_negatives) == (50000, 128, 16384)
    assert (term.temperature, term.momentum, term.seed) == (0.07, 0.5, 3)
    assert spec.weights == [0.8] and spec.student_loss_weight == 1.0
    assert spec.side_inputs == ("index",)
    context.options = {"kd_weight": "1.0"}
    assert [t.name for t in methods.build("crd", context).terms] == ["crd", "kd"]
    with pytest.raises(ValueError, match="num_train_examples"):
        methods.build("crd", methods.MethodContext(teacher=None, student=None, num_classes=10))
