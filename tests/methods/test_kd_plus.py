"""The `kd_plus` recipe builder (keras_distill/methods/kd_plus.py).

Moved from tests/losses/test_kd_plus.py (the maths of the term is tested there).

KD+: KD on extra inputs built from the batch, and the generic "+".

Hand derivation of the golden value (the same numbers as test_kd.py): a
linear teacher with identity kernel and a linear student with the reversed
identity (anti-diagonal) kernel, no biases. On the unlabeled input
u = [1, 2, 3] the teacher's logits are [1, 2, 3] and the student's
[3, 2, 1]; at T = 4
    p = softmax([0.25, 0.5, 0.75]) = [0.254275, 0.326496, 0.419229],
    log p - log q = [-0.5, 0, 0.5],
    KL = 0.5 * (0.419229 - 0.254275) = 0.082477, T^2 KL = 1.319632.
On the labeled batch x = [1, 1, 1] both give [1, 1, 1]: KD = 0. So
`kd` = 0 and `kd_ood` = 1.319632, and the total with weights 0.9 / 0.9 / 0.1
is 0.1 * CE + 0.9 * 1.319632.
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill import methods
from keras_distill import plus as kd_plus
from keras_distill.losses.base import DistillationLoss
from keras_distill.losses.kd import KD
from keras_distill.methods import plus_spec
from keras_distill.plus import make_view, plus
from keras_distill.schedules import LinearWarmup
from keras_distill.testing import assert_replica_equivalence, conv_net
from keras_distill.views import CutMix, GaussianNoise, Mixup, SideInput


SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _context(teacher, student, **options):
    return methods.MethodContext(teacher=teacher, student=student, num_classes=3,
                                 options=options, seed=1)


class _FeatureL2(DistillationLoss):
    def __init__(self, name="feature_l2", **kwargs):
        super().__init__(teacher_taps=("stage2",), student_taps=("stage2",), name=name,
                         **kwargs)

    def compute(self, teacher, student, labels, side_inputs):
        return keras.ops.mean(keras.ops.square(teacher["stage2"] - student["stage2"]),
                              axis=(1, 2, 3))


def test_kd_plus_recipe_trains_and_logs_kd_ood():
    teacher, student = conv_net("t", 8, seed=1), conv_net("s", 4, seed=2)
    spec = methods.build("kd_plus", _context(teacher, student))
    assert [t.name for t in spec.terms] == ["kd", "kd_ood"]
    assert spec.weights == [0.9, 0.9] and spec.student_loss_weight == 0.1
    ood = spec.terms[1]
    assert isinstance(ood.input_view, Mixup) and ood.input_view.alpha == 1.0
    assert ood.input_view.fixed_lambda is None and ood.temperature == 4.0
    distiller = kd.Distiller(teacher, student, spec.terms, spec.weights,
                             student_loss_weight=spec.student_loss_weight)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 32)
    before = [w.copy() for w in student.get_weights()]
    logs = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert len(logs["kd_ood"]) == 2 and logs["kd_ood"][0] > 0
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))
    # Views are training-time inputs: evaluation logs kd but not kd_ood.
    evaluation = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert "kd" in evaluation and evaluation.get("kd_ood", 0.0) == 0.0


@pytest.mark.parametrize("source, view_type", [
    ("mixup", Mixup), ("cutmix", CutMix), ("noise", GaussianNoise), ("unlabeled", SideInput)])
def test_sources_from_method_options(source, view_type):
    teacher, student = conv_net("t", 8, seed=1), conv_net("s", 4, seed=2)
    spec = methods.build("kd_plus", _context(teacher, student, plus_source=source,
                                             plus_weight="0.5", plus_alpha="0.4"))
    assert isinstance(spec.terms[1].input_view, view_type)
    assert spec.weights == [0.9, 0.5]
    assert ("unlabeled" in spec.side_inputs) == (source == "unlabeled")
    with pytest.raises(ValueError, match=r"Unknown source.*'mixup', 'cutmix'"):
        methods.build("kd_plus", _context(teacher, student, plus_source="dreams"))


@methods.register("test_kd_plus_logits_and_features", description="test only")
def _logits_and_features(context):
    return methods.MethodSpec(terms=[KD(2.0), _FeatureL2()],
                              weights=[LinearWarmup(1.0, warmup_steps=10), 0.5],
                              student_loss_weight=1.0)


def test_any_method_gets_the_plus_by_name():
    teacher, student = conv_net("t", 4, seed=1), conv_net("s", 4, seed=2)
    base = methods.build("test_kd_plus_logits_and_features", _context(teacher, student))
    spec = methods.build("test_kd_plus_logits_and_features_plus",
                         _context(teacher, student, plus_source="cutmix"))
    assert methods.needs_teacher("test_kd_plus_logits_and_features_plus")
    # Only the logit-level term is copied; its warm-up schedule is shared.
    assert [t.name for t in spec.terms] == ["kd", "feature_l2", "kd_ood"]
    assert spec.weights[2] is spec.weights[0] and spec.weights[1] == 0.5
    assert spec.terms[2].temperature == 2.0 and isinstance(spec.terms[2].input_view, CutMix)
    assert len(base.terms) == 2  # the base spec is untouched
    distiller = kd.Distiller(teacher, student, spec.terms, spec.weights)
    distiller.compile(optimizer="sgd", loss=SCE)
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    assert "kd_ood" in distiller.fit(x, np.zeros(8), batch_size=8, verbose=0).history


def test_dkd_plus_resolves_once_dkd_is_registered():
    pytest.importorskip("keras_distill.losses.dkd")
    teacher, student = conv_net("t", 4, seed=1), conv_net("s", 4, seed=2)
    spec = methods.build("dkd_plus", _context(teacher, student))
    names = [t.name for t in spec.terms]
    assert len(names) == 2 and names[1] == f"{names[0]}_ood"
    assert isinstance(spec.terms[1].input_view, Mixup)


def test_plus_spec_explicit_terms_and_errors():
    spec = methods.MethodSpec(terms={"hint": _FeatureL2()}, weights={"hint": 2.0})
    with pytest.raises(ValueError, match=r"no logit-level term.*terms=\[\.\.\.\]"):
        plus_spec(spec)
    chosen = plus_spec(spec, GaussianNoise(0.1), terms=["hint"])
    assert list(chosen.terms) == ["hint", "hint_ood"] and chosen.weights == [2.0, 2.0]
    with pytest.raises(ValueError, match=r"no term named \['nope'\]"):
        plus_spec(spec, terms=["nope"])
    with pytest.raises(ValueError, match="already has an input view"):
        plus(plus(KD()))
    with pytest.raises(TypeError, match="needs a DistillationLoss"):
        plus("kd")
    with pytest.raises(TypeError, match="must be a keras_distill.views.InputView"):
        plus(KD(), view="mixup")
    with pytest.raises(ValueError, match=r"Unknown method 'nothing_plus'.*'_plus'"):
        methods.build("nothing_plus", _context(None, None))
    assert isinstance(make_view("noise", stddev=0.2), GaussianNoise)


def test_one_and_two_replicas_agree():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    u = rng.random((16, 8, 8, 1)).astype("float32")

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        spec = methods.build("kd_plus", _context(teacher, student, plus_source="unlabeled"))
        return kd.Distiller(teacher, student, spec.terms, spec.weights,
                            student_loss_weight=spec.student_loss_weight)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2,
                                           side_inputs={"unlabeled": u})
    assert single["kd_ood"][0] > 0


def test_module_registers_the_modifier():
    assert "plus" in methods.modifiers() and kd_plus.SOURCES[0] == "mixup"
