"""The `dml` recipe builder (keras_distill/methods/dml.py).

Moved from tests/test_cohort.py (the maths of the term is tested there).
"""


import numpy as np
import keras

from keras_distill import methods
from keras_distill.cohort import Cohort
from keras_distill.losses.dml import DML
from keras_distill.testing import conv_net


SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=16, classes=3, seed=0, shape=(8, 8, 1)):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape).astype("float32"), rng.integers(0, classes, n)


# ------------------------------------------------------------------- recipe
def _context(student, **options):
    return methods.MethodContext(teacher=None, student=student, num_classes=3,
                                 options={k: str(v) for k, v in options.items()})


def test_dml_recipe_builds_a_cohort_of_student_and_fresh_copy():
    assert methods.needs_teacher("dml") is False
    student = conv_net("s", 4, batch_norm=False)
    context = _context(student, temperature=2)
    spec = methods.build("dml", context)
    assert isinstance(spec.terms[0], DML) and spec.terms[0].temperature == 2.0
    cohort = spec.model_builder(context, spec)  # as recipes/distill.py calls it
    assert isinstance(cohort, Cohort) and cohort.student is student
    peer = cohort.members[1]
    assert peer.name == "s_peer1" and [w.shape for w in peer.get_weights()] == \
        [w.shape for w in student.get_weights()]
    assert not np.allclose(peer.get_weights()[0], student.get_weights()[0])
    cohort.compile(optimizer="sgd", loss=SCE)
    x, y = _data(n=8)
    assert np.isfinite(cohort.fit(x, y, verbose=0).history["member1_dml"][0])


def test_dml_recipe_peer_option_and_members():
    student = conv_net("s", 4, num_classes=3, input_shape=(28, 28, 1))
    context = _context(student, peer="fmnist_student_small", members=3, prediction="ensemble")
    spec = methods.build("dml", context)
    cohort = spec.model_builder(context, spec.terms, spec.weights)
    assert len(cohort.members) == 3 and cohort.prediction == "ensemble"
    assert cohort.members[1].count_params() != student.count_params()
    assert cohort.members[1].output.shape[-1] == 3
