"""The loss contract: needs declared by overriding, the training flag passed with the inputs.

A term declares its taps, labels and side inputs by overriding class
attributes or properties; `DistillationLoss.call` reads the Python bool
`y_pred["training"]` and forwards it as `compute(..., training=...)`. Terms
written for the earlier contract (a 4-argument `compute` that reads
`self.training`, needs passed to `super().__init__`) keep working.
"""

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill.losses import DKD, RKD, ClassMask, DistillationLoss
from keras_distill.ops import mean_per_example
from keras_distill.testing import build_term, conv_net, term_value

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class TapL2(DistillationLoss):
    """Mean squared difference of one tap, declared by properties."""

    def __init__(self, tap="stage2", name="tap_l2", **kwargs):
        super().__init__(name=name, **kwargs)
        self.tap = tap

    @property
    def teacher_taps(self):
        return (self.tap,)

    @property
    def student_taps(self):
        return (self.tap,)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        diff = keras.ops.cast(student[self.tap], "float32") - teacher[self.tap]
        return mean_per_example(keras.ops.square(diff))


class TrainingFlag(DistillationLoss):
    """Every example's value is the training flag it was given (1.0 or 0.0)."""

    def compute(self, teacher, student, labels, side_inputs, training=False):
        return keras.ops.zeros_like(student["logits"][:, 0]) + (1.0 if training else 0.0)


class LegacyFlag(DistillationLoss):
    """The earlier contract: 4-argument compute reading `self.training`, needs as kwargs."""

    def __init__(self, name="legacy", **kwargs):
        super().__init__(student_taps=("stage1",), requires_labels=True, name=name, **kwargs)

    def compute(self, teacher, student, labels, side_inputs):
        flag = 1.0 if self.training else 0.0
        return keras.ops.zeros_like(student["logits"][:, 0]) + flag


def _outputs(batch=2):
    logits = np.zeros((batch, 3), "float32")
    return {"logits": logits}, {"logits": logits}


def test_a_property_declared_tap_is_read_by_the_distiller():
    term = TapL2("stage1")
    assert term.teacher_taps == term.student_taps == ("stage1",)
    assert term.requires_labels is False and term.side_inputs == ()
    # Hand value: teacher map 0, student map 2 everywhere: mean (2 - 0)^2 = 4.
    teacher = {"logits": np.zeros((2, 3), "float32"), "stage1": np.zeros((2, 2, 2, 1), "float32")}
    student = {"logits": np.zeros((2, 3), "float32"),
               "stage1": np.full((2, 2, 2, 1), 2.0, "float32")}
    assert term_value(term, teacher, student) == pytest.approx(4.0)
    # The Distiller taps the student and teacher at the declared layer and trains.
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 8)
    distiller = kd.Distiller(conv_net("t", 4, seed=1), conv_net("s", 4, seed=2), [term], [1.0])
    distiller.compile(optimizer="sgd", loss=SCE)
    history = distiller.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert history.history["tap_l2"][0] > 0


def test_an_old_style_four_argument_compute_still_works():
    term = LegacyFlag()
    # Needs passed to super().__init__ apply when the class does not declare them.
    assert term.student_taps == ("stage1",) and term.requires_labels is True
    teacher, student = _outputs()
    labels = np.array([0, 1])
    assert term_value(term, teacher, student, labels, training=True) == 1.0
    assert term_value(term, teacher, student, labels, training=False) == 0.0
    # Absent flag: not training.
    value = term(keras.ops.convert_to_tensor(labels), {"teacher": teacher, "student": student})
    assert float(value) == 0.0


def test_training_reaches_compute_as_a_python_bool_inside_a_traced_step():
    term = TrainingFlag()
    teacher, student = _outputs()

    @tf.function
    def step(training):
        return term(0.0, {"teacher": teacher, "student": student, "training": training})

    assert float(step(True)) == 1.0 and float(step(False)) == 0.0
    assert term_value(term, teacher, student, training=True) == 1.0
    assert term_value(term, teacher, student) == 0.0


def test_a_training_flag_known_only_at_run_time_is_refused():
    term = TrainingFlag(name="flag")
    teacher, student = _outputs()

    @tf.function(input_signature=[tf.TensorSpec((), tf.bool)])
    def step(training):
        return term(0.0, {"teacher": teacher, "student": student, "training": training})

    with pytest.raises(ValueError, match="'flag'.*must be a Python bool"):
        step(tf.constant(True))


@pytest.mark.parametrize("inner", [TrainingFlag, LegacyFlag])
def test_class_mask_forwards_training_to_its_inner_term(inner):
    teacher, student = _outputs(batch=3)
    teacher["stage1"] = student["stage1"] = np.zeros((3, 1), "float32")
    masked = build_term(ClassMask(inner(), num_classes=3, mode="drop"), teacher, student)
    labels = np.array([0, 1, 2])
    assert term_value(masked, teacher, student, labels, training=True) == 1.0
    assert term_value(masked, teacher, student, labels, training=False) == 0.0
    # Labels masked for class 2: one of three examples drops out (mean 2/3 while training).
    masked.class_mask.assign([0.0, 0.0, 1.0])
    assert term_value(masked, teacher, student, labels, training=True) == pytest.approx(2 / 3)


def test_class_mask_declares_its_inner_terms_needs_plus_labels():
    masked = ClassMask(RKD(teacher_tap="a", student_tap="b"), num_classes=3, mode="hard_label")
    assert masked.teacher_taps == ("a",)
    assert masked.student_taps == ("b", "logits")
    assert masked.requires_labels is True and masked.side_inputs == ()


def test_configs_of_the_earlier_base_still_load():
    # Declaration keys the earlier base could carry are ignored when the class declares
    # the need itself (here from teacher_tap / student_tap, or DKD's labels).
    config = {**RKD(teacher_tap="a", student_tap="b").get_config(), "teacher_taps": ["x"],
              "student_taps": ["y"], "requires_labels": False, "side_inputs": []}
    restored = RKD.from_config(config)
    assert (restored.teacher_taps, restored.student_taps) == (("a",), ("b",))
    dkd = DKD.from_config({**DKD(beta=2.0).get_config(), "requires_labels": False})
    assert dkd.requires_labels is True and dkd.beta == 2.0
    # ... and applied when it does not.
    plain = TrainingFlag.from_config({**TrainingFlag(name="p").get_config(),
                                       "teacher_taps": ["stage3"], "side_inputs": ["index"]})
    assert plain.teacher_taps == ("stage3",) and plain.side_inputs == ("index",)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['tap'\\]"):
        TrainingFlag(tap="stage1")
