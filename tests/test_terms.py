"""WeightedTerms: names, weights (variables, schedules), config, replicas, what terms read."""

import ast
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill import losses, terms
from keras_distill.terms import WeightedTerms
from keras_distill.testing import conv_net, two_replica_strategy
from keras_distill.views import Mixup, SideInput

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "keras_distill")


def _value(tensor):
    return float(keras.ops.convert_to_numpy(tensor))


# ------------------------------------------------------------------ names
def test_list_terms_are_named_after_the_term_and_repeats_get_a_suffix():
    weighted = WeightedTerms([losses.KD(4.0), losses.KD(2.0), losses.DKD(), losses.KD(1.0)])
    assert weighted.names == ["kd", "kd_2", "dkd", "kd_3"]
    assert [t.temperature for t in (weighted.get("kd"), weighted.get("kd_2"))] == [4.0, 2.0]
    assert len(weighted) == 4 and [n for n, _ in weighted.items()] == weighted.names


def test_dict_names_single_terms_serialized_terms_and_keras_losses():
    kd = losses.KD(3.0)
    assert WeightedTerms({"soft": kd}).names == ["soft"]
    assert WeightedTerms(kd).terms == [kd]
    (restored,) = WeightedTerms([keras.saving.serialize_keras_object(kd)]).terms
    assert isinstance(restored, losses.KD) and restored.temperature == 3.0
    feature = keras.distillation.FeatureDistillation(
        loss="mse", teacher_layer_name="stage2", student_layer_name="stage2")
    (converted,) = WeightedTerms([feature]).terms
    assert isinstance(converted, losses.DistillationLoss)
    assert converted.teacher_taps == ("stage2",) and converted.student_taps == ("stage2",)


def test_unknown_term_names_the_terms():
    with pytest.raises(KeyError, match=r"No term named 'kd_9'; terms: \['kd'\]"):
        WeightedTerms([losses.KD()]).get("kd_9")


# ---------------------------------------------------------------- weights
def test_float_weights_become_assignable_float32_variables():
    weighted = WeightedTerms([losses.KD(), losses.DKD()], [0.9, 2], student_loss_weight=0.1)
    kd_weight = weighted.weight("kd")
    assert isinstance(kd_weight, keras.Variable) and not kd_weight.trainable
    assert kd_weight.dtype == "float32" and kd_weight.name == "kd_weight"
    assert _value(weighted.value("kd")) == pytest.approx(0.9)
    assert _value(weighted.value("dkd")) == 2.0
    assert _value(weighted.student_value()) == pytest.approx(0.1)
    kd_weight.assign(0.25)  # what a callback does
    assert _value(weighted.value("kd")) == 0.25
    assert weighted.variables == [kd_weight, weighted.weight("dkd"),
                                  weighted.student_loss_weight]


def test_variables_are_kept_and_schedules_evaluated_at_the_optimizer_step():
    shared = keras.Variable(0.5, trainable=False)
    decay = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    weighted = WeightedTerms([losses.KD(), losses.DKD()], [shared, decay],
                             student_loss_weight=decay)
    assert weighted.weight("kd") is shared and weighted.weight("dkd") is decay
    assert weighted.variables == [shared]
    optimizer = keras.optimizers.SGD()
    optimizer.build([keras.Variable(0.0)])
    assert _value(weighted.value("dkd")) == 1.0  # no optimizer: step 0
    optimizer.iterations.assign(3)
    assert _value(weighted.value("dkd", optimizer)) == 0.125
    assert _value(weighted.student_value(optimizer)) == 0.125


def test_weights_default_to_one_and_may_be_given_by_name():
    assert [_value(w) for w in WeightedTerms([losses.KD(), losses.DKD()]).weights.values()] \
        == [1.0, 1.0]
    weighted = WeightedTerms([losses.KD(), losses.DKD()], {"dkd": 3.0})
    assert [_value(weighted.value(n)) for n in ("kd", "dkd")] == [1.0, 3.0]


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match=r"names \['kdd'\], which are not terms"):
        WeightedTerms([losses.KD()], {"kdd": 1.0})
    with pytest.raises(ValueError, match="Got 2 distillation_loss_weights for 1 terms"):
        WeightedTerms([losses.KD()], [1.0, 2.0])
    with pytest.raises(TypeError, match="Weight 'kd_weight' must be a float"):
        WeightedTerms([losses.KD()], ["0.5"])
    with pytest.raises(TypeError, match="Weight 'student_loss_weight' must be a float"):
        WeightedTerms([losses.KD()], student_loss_weight=None)


# ----------------------------------------------------------------- config
def test_config_round_trip_keeps_assigned_values_and_schedules():
    decay = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=4, decay_rate=0.5)
    weighted = WeightedTerms({"soft": losses.KD(3.0), "dkd": losses.DKD()}, [0.9, decay],
                             student_loss_weight=0.1)
    weighted.weight("soft").assign(0.5)
    config = weighted.get_config()
    assert config["distillation_loss_weights"]["soft"] == 0.5
    assert config["student_loss_weight"] == pytest.approx(0.1)
    restored = WeightedTerms.from_config(json.loads(json.dumps(config)))
    assert restored.names == ["soft", "dkd"] and restored.get("soft").temperature == 3.0
    assert _value(restored.value("soft")) == 0.5
    schedule = restored.weight("dkd")
    assert isinstance(schedule, keras.optimizers.schedules.ExponentialDecay)
    assert schedule.get_config() == decay.get_config()


def test_weight_config_helpers_invert_each_other():
    decay = keras.optimizers.schedules.CosineDecay(1.0, decay_steps=10)
    assert terms.weight_from_config(terms.weight_config(keras.Variable(0.75))) == 0.75
    back = terms.weight_from_config(terms.weight_config(decay))
    assert isinstance(back, keras.optimizers.schedules.CosineDecay)
    assert back.get_config() == decay.get_config()


# --------------------------------------------------------------- replicas
def test_replica_scaling_is_keras_loss_scaling():
    value = tf.constant(3.0)
    assert terms.num_replicas() == 1
    assert terms.scale(value) is value and terms.unscale(value) is value
    strategy = two_replica_strategy()
    with strategy.scope():
        assert terms.num_replicas() == 2
        assert _value(terms.scale(value)) == 1.5 and _value(terms.unscale(value)) == 6.0


# ------------------------------------------------------------ what they read
def test_taps_side_inputs_and_views_of_the_set():
    mixup = Mixup(name="mix")
    other_mixup = Mixup(name="mix")  # same name, another object: a second view
    weighted = WeightedTerms({
        "fit": losses.FitNet("stage2", "stage1"),
        "kd": losses.KD(input_view=mixup),
        "kd_again": losses.KD(input_view=mixup),
        "kd_other": losses.KD(input_view=other_mixup),
        "kd_u": losses.KD(input_view=SideInput("unlabeled", name="u")),
        "crd": losses.CRD(num_examples=8, teacher_tap="stage2", student_tap="stage2"),
    })
    assert weighted.teacher_taps == ["stage2"]
    assert weighted.student_taps == ["stage1", "stage2"]
    assert weighted.views == {"mix": mixup, "mix_2": other_mixup,
                              "u": weighted.get("kd_u").input_view}
    assert weighted.view_names == {"fit": None, "kd": "mix", "kd_again": "mix",
                                   "kd_other": "mix_2", "kd_u": "u", "crd": None}
    assert weighted.side_inputs("kd_u") == ("unlabeled",)
    assert weighted.side_inputs("crd") == ("index",)
    assert weighted.all_side_inputs == ["unlabeled", "index"]


def test_batch_layout_helpers():
    x, index = tf.zeros((2, 3)), tf.constant([0, 1])
    assert terms.split_inputs(x) == (x, {})
    inputs, side = terms.split_inputs({"inputs": x, "index": index})
    assert inputs is x and side == {"index": index}
    assert terms.integer_labels(None) is None
    assert terms.integer_labels(tf.constant([[1], [2]])).shape == (2,)
    assert terms.integer_labels(tf.zeros((2, 3))).shape == (2, 3)  # one-hot: unchanged


# ------------------------------------------------------------------ layering
def _tree(module):
    with open(os.path.join(PACKAGE, module)) as file:
        return ast.parse(file.read())


@pytest.mark.parametrize("module", ["distiller.py", "cohort.py", "native_ensemble.py"])
def test_trainers_set_no_training_attribute_on_a_term(module):
    """The flag travels in y_pred["training"]; no trainer writes `<term>.training = ...`."""
    targets = [target for node in ast.walk(_tree(module)) if isinstance(node, ast.Assign)
               for target in node.targets]
    assert not [t for t in targets if isinstance(t, ast.Attribute) and t.attr == "training"]


@pytest.mark.parametrize("module", ["cohort.py", "native_ensemble.py"])
def test_trainers_share_terms_py_not_the_distiller(module):
    tree = _tree(module)
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert "keras_distill.terms" in imported
    assert "keras_distill.distiller" not in imported
    assert not any(isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                   and node.value.id == "Distiller" for node in ast.walk(tree))


def test_all_side_inputs_ignore_duplicates():
    weighted = WeightedTerms([losses.KD(input_view=SideInput("u")),
                              losses.DKD(input_view=SideInput("u"))])
    assert weighted.all_side_inputs == ["u"]
    assert len(weighted.views) == 2  # two view objects: two views, one side input


# ------------------------------------------------------------ the training flag
class FlagRecorder(losses.KD):
    """KD that records the `y_pred["training"]` each call hands it (at trace time)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flags = []

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.flags.append(y_pred["training"])
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)


def _distiller(term):
    return kd.Distiller(conv_net("t", 4), conv_net("s", 4), [term])


def _cohort(term):
    return kd.Cohort([conv_net("a", 4, seed=1), conv_net("b", 4, seed=2)], [term])


def _native_ensemble(term):
    return kd.NativeEnsemble(conv_net("o", 4), split="stage2", branches=2,
                             distillation_loss=term)


@pytest.mark.parametrize("make", [_distiller, _cohort, _native_ensemble])
def test_every_trainer_hands_terms_the_training_flag_as_a_python_bool(make):
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 8)
    term = FlagRecorder(temperature=2.0, name="kd")
    model = make(term)
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert term.flags and all(flag is True for flag in term.flags)
    del term.flags[:]
    model.evaluate(x, y, batch_size=4, verbose=0)
    assert term.flags and all(flag is False for flag in term.flags)


def test_the_distiller_holds_its_views_by_name():
    mixup = Mixup(name="mix")
    distiller = kd.Distiller(conv_net("t", 4), conv_net("s", 4), {
        "kd": losses.KD(), "kd_mix": losses.KD(input_view=mixup),
        "dkd_mix": losses.DKD(input_view=mixup)})
    assert dict(distiller.views) == {"mix": mixup}
    assert distiller.weighted_terms.view_names == {"kd": None, "kd_mix": "mix",
                                                   "dkd_mix": "mix"}
