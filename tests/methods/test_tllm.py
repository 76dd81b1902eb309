"""The `tllm` recipe builder (keras_distill/methods/tllm.py).

Moved from tests/losses/test_tllm.py (the maths of the term is tested there).

TLLM through its recipe: ClassMask(KD) + CE and the UndistillableClasses callback.

Golden value (as in test_kd.py): teacher logits [1, 2, 3], student [3, 2, 1],
T = 4: T^2 KL(p || q) = 1.319632. TLLM's term (default mode "hard_label") is
`(1 - m[y]) * T^2 KL(p || q) + m[y] * CE(y, softmax(z_s))`: 1.319632 for an
unmasked label; for a masked (undistillable) label 1 the hard-label
cross-entropy -ln(e^2 / (e^3 + e^2 + e)) = 1.407606. In mode "drop" a masked
label gives exactly 0. The Distiller's own CE term is untouched.
"""

import json

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill import methods
from keras_distill.callbacks.undistillable import (REPORT_JSON, REPORT_PNG, UndistillableClasses,
                                                   per_class_accuracy)
from keras_distill.losses.combinators import ClassMask
from keras_distill.losses.kd import KD
from keras_distill.testing import (build_term, conv_net,
                                   random_outputs, term_value)


SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1)).astype("float32"), rng.integers(0, 3, n)


def _context(teacher=None, student=None, validation=None, **options):
    return methods.MethodContext(teacher=teacher, student=student, num_classes=3,
                                 validation_data=validation if validation is not None
                                 else _data(12, seed=9), options=options, epochs=2)


def _per_example(term, teacher, student, labels):
    return np.array([term_value(term, {"logits": teacher["logits"][i:i + 1]},
                                {"logits": student["logits"][i:i + 1]}, labels[i:i + 1])
                     for i in range(len(labels))])


def test_recipe_spec():
    spec = methods.build("tllm", _context(reference_accuracy=[0.5, 0.6, 0.7], delta="0.02",
                                          update_every="2", freeze_epoch="10"))
    (term,) = spec.terms
    assert isinstance(term, ClassMask) and isinstance(term.term, KD)
    assert term.name == "kd" and term.mode == "hard_label" and term.term.temperature == 4.0
    assert spec.weights == [0.9] and spec.student_loss_weight == 0.1
    (callback,) = spec.callbacks
    assert isinstance(callback, UndistillableClasses) and callback.mask is term
    assert (callback.delta, callback.update_every, callback.freeze_epoch) == (0.02, 2, 10)
    assert callback.reference_accuracy == [0.5, 0.6, 0.7]


def test_golden_value_and_hand_set_mask_through_the_recipe():
    spec = methods.build("tllm", _context(reference_accuracy=[0.5, 0.5, 0.5]))
    (term,) = spec.terms
    teacher = {"logits": np.array([[1.0, 2.0, 3.0]] * 3, "float32")}
    student = {"logits": np.array([[3.0, 2.0, 1.0]] * 3, "float32")}
    build_term(term, teacher, student)
    labels = np.array([0, 1, 2])
    np.testing.assert_allclose(_per_example(term, teacher, student, labels), [1.319632] * 3,
                               atol=1e-5)
    term.class_mask.assign(np.array([0.0, 1.0, 0.0], "float32"))
    values = _per_example(term, teacher, student, labels)
    np.testing.assert_allclose(values, [1.319632, 1.407606, 1.319632], atol=1e-5)


def test_drop_mode_masked_samples_are_exactly_zero_others_unchanged():
    spec = methods.build("tllm", _context(reference_accuracy=[0.5, 0.5, 0.5],
                                          mask_mode="drop"))
    (term,) = spec.terms
    teacher, student, _ = random_outputs(batch=9, num_classes=3, seed=3)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    build_term(term, teacher, student)
    plain = _per_example(KD(4.0), teacher, student, labels)
    term.class_mask.assign(np.array([1.0, 0.0, 1.0], "float32"))
    values = _per_example(term, teacher, student, labels)
    masked = np.isin(labels, [0, 2])
    assert np.all(values[masked] == 0.0)
    np.testing.assert_array_equal(values[~masked], plain[~masked])


def test_distiller_run_masks_the_dropped_class_and_writes_the_report(tmp_path):
    x, y = _data(24)
    validation = _data(30, seed=4)
    teacher, student = conv_net("t", 8, seed=1), conv_net("s", 4, seed=2, batch_norm=False)
    accuracy = per_class_accuracy(student, validation, 3)
    dropped = int(np.flatnonzero(accuracy < 1.0)[0])
    reference = accuracy.copy()
    reference[dropped] = 1.0  # the reference student was better on this class only
    spec = methods.build("tllm", _context(teacher, student, validation,
                                          reference_accuracy=reference.tolist(),
                                          report_dir=str(tmp_path), mask_mode="drop"))
    distiller = kd.Distiller(teacher, student, spec.terms, spec.weights,
                             student_loss_weight=spec.student_loss_weight)
    # lr 0: the student never changes, so only the mask changes the kd value.
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    logs = distiller.fit(x, y, batch_size=24, epochs=2, verbose=0, shuffle=False,
                         callbacks=spec.callbacks).history
    assert logs["undistillable_classes"] == [1.0, 1.0]
    mask = np.asarray(spec.terms[0].class_mask)
    np.testing.assert_array_equal(mask, np.eye(3)[dropped])
    per_example = _per_example(KD(4.0), {"logits": np.asarray(teacher(x, training=False))},
                               {"logits": np.asarray(student(x, training=False))}, y)
    assert logs["kd"][0] == pytest.approx(per_example.mean(), abs=1e-6)  # epoch 1: no mask
    assert logs["kd"][1] == pytest.approx((per_example * (y != dropped)).mean(), abs=1e-6)
    assert logs["kd"][1] < logs["kd"][0]
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert report["undistillable"] == [dropped]
    assert report["gain"][dropped] < 0 and (tmp_path / REPORT_PNG).exists()


def test_reference_is_computed_when_not_given():
    teacher, student = conv_net("t", 8, seed=1), conv_net("s", 4, seed=2)
    context = _context(teacher, student, reference_epochs="1")
    with pytest.raises(ValueError, match=r"reference_accuracy=.*MethodContext.train_data"):
        methods.build("tllm", context)
    context.train_data = _data(16, seed=5)
    spec = methods.build("tllm", context)
    callback = spec.callbacks[0]
    assert callable(callback.reference_accuracy) and "trained for 1 epochs" in spec.notes
    # The callback calls it at on_train_begin (tests/callbacks/test_undistillable.py).
    before = [w.copy() for w in student.get_weights()]
    trajectory = callback.reference_accuracy()  # one row per epoch, compared epoch by epoch
    assert len(trajectory) == 1 and len(trajectory[0]) == 3
    assert all(0.0 <= r <= 1.0 for r in trajectory[0])
    for a, b in zip(before, student.get_weights()):  # a fresh clone was trained, not it
        np.testing.assert_array_equal(a, b)


def test_reference_from_a_file_or_a_string_and_raw_pixels(tmp_path):
    path = tmp_path / "scratch.json"
    path.write_text(json.dumps({"per_class_accuracy": [0.1, 0.2, 0.3]}))
    x, y = _data(12)
    raw = ((x * 255).astype("uint8"), y)
    spec = methods.build("tllm", _context(validation=raw, reference_accuracy=str(path)))
    assert spec.callbacks[0].reference_accuracy == [0.1, 0.2, 0.3]
    # Raw integer pixels go through the recipes' pipeline (scaled to [0, 1]).
    assert isinstance(spec.callbacks[0].validation_data, tf.data.Dataset)
    spec = methods.build("tllm", _context(reference_accuracy="0.4;0.5;0.6"))
    assert spec.callbacks[0].reference_accuracy == [0.4, 0.5, 0.6]


def test_the_runs_reference_trajectory_is_preferred(tmp_path):
    """A recipe passes the labels-only student's per-epoch trajectory (or a trainer of it):
    it is used as given, and a trajectory file is accepted as reference_accuracy."""
    trajectory = [[0.2, 0.3, 0.4], [0.5, 0.6, 0.7]]
    context = _context()
    context.reference_history = trajectory
    spec = methods.build("tllm", context)
    assert spec.callbacks[0].reference_accuracy == trajectory
    assert "reference trajectory" in spec.notes
    path = tmp_path / "reference_per_class_accuracy.json"
    path.write_text(json.dumps([[0.2, None, 0.4], [0.5, 0.6, 0.7]]))
    spec = methods.build("tllm", _context(reference_accuracy=str(path)))
    reference = spec.callbacks[0].reference_accuracy
    assert np.isnan(reference[0][1]) and reference[1] == [0.5, 0.6, 0.7]


def test_bad_arguments():
    with pytest.raises(ValueError, match="carved from the training set"):
        methods.build("tllm", methods.MethodContext(None, None, 3, options={
            "reference_accuracy": [0.5] * 3}))
    with pytest.raises(ValueError, match=r"must hold 3 per-class accuracies .*shape \(2,\)"):
        methods.build("tllm", _context(reference_accuracy=[0.5, 0.5]))
    with pytest.raises(ValueError, match="mode must be one of"):
        methods.build("tllm", _context(reference_accuracy=[0.5] * 3, mask_mode="zero"))
