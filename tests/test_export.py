"""Tests of keras_distill.export: every format round-trips and is checked.

One tiny student is trained once and exported to every format once
(module-scoped fixtures): converting costs about half a second per format.
"""

from __future__ import annotations

import json
import os
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

from keras_distill import export
from keras_distill.export.runners import tflite_interpreter_class

NUM_CLASSES = 10


def synthetic_images(count, seed):
    """uint8 28x28x1 images: a class prototype plus noise, so a tiny CNN learns it."""
    prototypes = np.random.default_rng(1234).integers(0, 256, (NUM_CLASSES, 28, 28, 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count)
    noise = rng.integers(0, 128, (count, 28, 28, 1))
    images = np.clip(0.5 * prototypes[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def tiny_student(name="student"):
    """A functional CNN whose normalisation (Rescaling) is part of the model."""
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.8, name="norm")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def shifted_classes_copy(model):
    """Same architecture and weights, but class c's logit moved to class c+1."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    kernel, bias = copy.get_layer("logits").get_weights()
    copy.get_layer("logits").set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])
    return copy


@pytest.fixture(scope="module")
def data():
    return {"train": synthetic_images(600, seed=1), "test": synthetic_images(200, seed=2)}


@pytest.fixture(scope="module")
def student(data):
    keras.utils.set_random_seed(0)
    model = tiny_student()
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = data["train"]
    model.fit(x.astype("float32"), y, epochs=3, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(student, data, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("export"))
    reports = export.export_student(
        student,
        output_dir,
        calibration_data=data["train"][0],  # uint8, as a loader returns it
        eval_data=data["test"],
        num_calibration=64,
        latency_runs=5,
    )
    return output_dir, reports


def test_the_student_learned_something(student, data):
    # Parity on degenerate logits would prove little: the student must be sure.
    x, y = data["test"]
    assert student.evaluate(x.astype("float32"), y, verbose=0)[1] > 0.9


def test_every_format_round_trips_and_passes_parity(exported, data):
    output_dir, reports = exported
    assert list(reports) == list(export.FORMATS)
    x, y = data["test"]
    for format, report in reports.items():
        assert report["path"] == os.path.abspath(export.artifact_path(output_dir, format))
        with open(os.path.join(output_dir, format, "report.json")) as file:
            assert json.load(file) == report
        runner = export.load_artifact(report["path"])
        logits = runner.predict(x.astype("float32"))
        assert logits.shape == (len(x), NUM_CLASSES) and logits.dtype == np.float32
        parity = report["parity"]
        assert parity["passed"] and parity["examples"] == len(x)
        assert parity["top1_agreement"] >= export.DEFAULT_THRESHOLDS[format]
        assert abs(report["accuracy"] - np.mean(logits.argmax(-1) == y)) < 1e-9
        assert report["size_bytes"] > 0 and report["latency_ms_per_example"] > 0
        assert report["student_input"] == {
            "name": "image",
            "shape": [None, 28, 28, 1],
            "dtype": "float32",
        }
    with open(os.path.join(output_dir, "reports.json")) as file:
        assert json.load(file) == reports
    # Float formats reproduce the logits closely; int8 ones approximately.
    assert reports["saved_model"]["parity"]["max_abs_logit_difference"] < 1e-5
    assert reports["tflite_float32"]["parity"]["max_abs_logit_difference"] < 1e-4


def test_int8_model_has_int8_input_and_output_with_recorded_quantisation(exported, data):
    _, reports = exported
    report = reports["tflite_int8"]
    interpreter_class, _ = tflite_interpreter_class()
    interpreter = interpreter_class(model_path=report["path"])
    (input_detail,), (output_detail,) = (
        interpreter.get_input_details(),
        interpreter.get_output_details(),
    )
    assert input_detail["dtype"] == np.int8 and output_detail["dtype"] == np.int8
    assert report["input"]["dtype"] == report["output"]["dtype"] == "int8"
    input_scale, input_zero_point = input_detail["quantization"]
    assert report["input"]["quantization"] == pytest.approx(
        {"scale": input_scale, "zero_point": input_zero_point}
    )
    assert report["num_calibration"] == 64
    # The runner quantises / dequantises exactly as documented.
    x = data["test"][0][:8].astype("float32")
    quantized = np.clip(np.round(x / input_scale) + input_zero_point, -128, 127).astype(np.int8)
    interpreter.resize_tensor_input(input_detail["index"], quantized.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], quantized)
    interpreter.invoke()
    output_scale, output_zero_point = output_detail["quantization"]
    raw = interpreter.get_tensor(output_detail["index"]).astype(np.float32)
    expected = (raw - output_zero_point) * output_scale
    np.testing.assert_allclose(
        export.load_artifact(report["path"]).predict(x), expected, rtol=0, atol=1e-6
    )
    # Every other TFLite format keeps float32 I/O.
    for format in ("tflite_float32", "tflite_float16", "tflite_dynamic_int8"):
        assert reports[format]["input"]["dtype"] == reports[format]["output"]["dtype"] == "float32"
        assert reports[format]["input"]["quantization"] is None


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_tflite_runs_on_tf_lite_when_litert_is_missing(exported, data, monkeypatch):
    _, reports = exported
    path = reports["tflite_int8"]["path"]
    x = data["test"][0][:16].astype("float32")
    litert_logits = export.load_artifact(path).predict(x)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    runner = export.load_artifact(path)
    assert runner.runtime.startswith("tf.lite")
    np.testing.assert_allclose(runner.predict(x), litert_logits, atol=1e-6)


def test_saved_model_has_a_float32_serving_signature(exported, student, data):
    _, reports = exported
    loaded = tf.saved_model.load(reports["saved_model"]["path"])
    serving = loaded.signatures["serving_default"]
    _, inputs = serving.structured_input_signature
    assert inputs["image"].dtype == tf.float32 and inputs["image"].shape.as_list() == [
        None,
        28,
        28,
        1,
    ]
    x = data["test"][0][:4].astype("float32")
    (logits,) = serving(image=tf.constant(x)).values()
    np.testing.assert_allclose(logits.numpy(), student.predict(x, verbose=0), atol=1e-5)


def saved_model_variable_names(path):
    return sorted(variable.name.split(":")[0] for variable in tf.saved_model.load(path).variables)


def test_saved_model_holds_exactly_the_students_variables(exported, student, tmp_path):
    _, reports = exported
    loaded = tf.saved_model.load(reports["saved_model"]["path"])
    names = saved_model_variable_names(reports["saved_model"]["path"])
    assert names == sorted(weight.path for weight in student.weights)
    assert (
        sum(int(np.prod(variable.shape)) for variable in loaded.variables) == student.count_params()
    )
    student_layers = {layer.name for layer in student.layers}
    assert {name.split("/")[0] for name in names} <= student_layers

    # The same listing catches a teacher riding along: a wrapper that calls
    # only the student but owns a teacher exports the teacher's variables too.
    class WithTeacher(keras.Model):
        def __init__(self, teacher, student):
            super().__init__()
            self.teacher, self.student = teacher, student

        def call(self, inputs):
            return self.student(inputs)

    teacher = tiny_student("teacher")
    wrapper = WithTeacher(teacher, student)
    wrapper(np.zeros((1, 28, 28, 1), "float32"))
    wrapper.export(str(tmp_path / "leaky"), verbose=False)
    leaky = saved_model_variable_names(str(tmp_path / "leaky"))
    assert len(leaky) == len(student.weights) + len(teacher.weights) != len(names)
    # ...which is why export_student refuses such a model outright.
    with pytest.raises(TypeError, match=r"holds a teacher.*distiller\.student"):
        export.export_student(
            wrapper,
            str(tmp_path / "refused"),
            formats=["saved_model"],
            eval_data=np.zeros((2, 28, 28, 1)),
        )


def test_tflite_constants_are_bounded_by_the_students_weights(exported, student):
    _, reports = exported
    student_bytes = 4 * student.count_params()  # float32
    for format in export.TFLITE_FORMATS:
        model = flatbuffer_utils.read_model(reports[format]["path"])
        constant_bytes = sum(
            len(buffer.data) for buffer in model.buffers if buffer.data is not None
        )
        tensor_count = sum(len(subgraph.tensors) for subgraph in model.subgraphs)
        assert constant_bytes <= student_bytes + 512, format
        assert tensor_count <= 4 * len(student.layers) + 8, format
        if format in ("tflite_dynamic_int8", "tflite_int8"):
            assert constant_bytes < 0.5 * student_bytes, format  # int8 weights


def test_parity_check_fails_on_a_tflite_file_of_a_perturbed_model(student, data, tmp_path):
    perturbed = shifted_classes_copy(student)
    saved_model_dir = export.write_saved_model(perturbed, tmp_path / "perturbed_saved_model")
    path = tmp_path / "perturbed.tflite"
    path.write_bytes(export.convert_to_tflite(saved_model_dir, "tflite_float32"))
    with pytest.raises(
        export.ExportParityError,
        match=r"tflite_float32: top-1 agreement 0\.\d+ .* under the threshold 0\.99",
    ) as caught:
        export.check_parity(path, student, data["test"], format="tflite_float32")
    assert not caught.value.reports["tflite_float32"]["parity"]["passed"]
    # The genuine model's SavedModel, for contrast, passes.
    assert (
        export.check_parity(saved_model_dir, perturbed, data["test"])["parity"]["top1_agreement"]
        == 1.0
    )


def test_parity_check_fails_on_a_saved_model_of_another_model(student, data, tmp_path):
    keras.utils.set_random_seed(1)
    other = tiny_student("other")  # untrained, same input and output shapes
    path = export.write_saved_model(other, tmp_path / "other")
    with pytest.raises(
        export.ExportParityError, match=r"saved_model: top-1 agreement .* under the threshold 0\.99"
    ):
        export.check_parity(path, student, data["test"], format="saved_model")


def test_export_student_raises_after_writing_reports_when_a_conversion_is_broken(
    student, data, tmp_path, monkeypatch
):
    # Simulate a converter bug: the TFLite file comes from perturbed weights.
    import keras_distill.export.exporter as exporter

    convert = exporter.convert_to_tflite
    broken_dir = export.write_saved_model(shifted_classes_copy(student), tmp_path / "broken")
    monkeypatch.setattr(exporter, "convert_to_tflite", lambda _, *args: convert(broken_dir, *args))
    output_dir = tmp_path / "export"
    with pytest.raises(export.ExportParityError, match="must not be shipped") as caught:
        export.export_student(
            student, output_dir, formats="tflite_float32", eval_data=data["test"], latency_runs=1
        )
    assert "tflite_float32: top-1 agreement" in str(caught.value)
    report = json.loads((output_dir / "tflite_float32" / "report.json").read_text())
    assert report["parity"]["passed"] is False
    assert report == caught.value.reports["tflite_float32"]


def test_an_existing_export_is_refused_unless_overwrite(exported, student, data, tmp_path):
    output_dir, reports = exported
    before = os.path.getmtime(reports["tflite_int8"]["path"])
    with pytest.raises(
        FileExistsError,
        match=r"already holds an export .*overwrite=True \(recipe flag --overwrite\)",
    ):
        export.export_student(student, output_dir, formats=["saved_model"], eval_data=data["test"])
    assert os.path.getmtime(reports["tflite_int8"]["path"]) == before

    # overwrite=True replaces every earlier artifact and leaves other files.
    stale = tmp_path / "tflite_float16" / "model.tflite"
    stale.parent.mkdir()
    stale.write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("keep me")
    split = types.SimpleNamespace(x=data["test"][0], y=data["test"][1])  # like data.ArraySplit
    new_reports = export.export_student(
        student, tmp_path, formats=["saved_model"], eval_data=split, overwrite=True, latency_runs=1
    )
    assert new_reports["saved_model"]["accuracy"] == reports["saved_model"]["accuracy"]
    assert list(new_reports) == ["saved_model"]
    assert not stale.parent.exists() and (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_mixed_bfloat16_student_is_exported_as_a_float32_copy(data, tmp_path):
    # TFLite has no bfloat16 kernels: converting the student as is fails.
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", dtype="mixed_bfloat16")(inputs)
    x = keras.layers.Flatten(dtype="mixed_bfloat16")(x)
    mixed = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, dtype="float32")(x))
    x_test, y_test = data["test"]
    reports = export.export_student(
        mixed,
        tmp_path,
        formats="tflite_float32",
        eval_data=(x_test / 255.0, y_test),
        latency_runs=1,
    )
    report = reports["tflite_float32"]
    assert report["exported_precision"] == "float32 copy of a mixed_bfloat16 model"
    assert report["parity"]["passed"] and report["input"]["dtype"] == "float32"
    assert mixed.layers[1].dtype_policy.name == "mixed_bfloat16"  # the student is untouched


def test_argument_errors_are_clear(student, data, tmp_path):
    with pytest.raises(ValueError, match="tflite_int8 .* needs calibration_data"):
        export.export_student(student, tmp_path, formats=["tflite_int8"], eval_data=data["test"])
    with pytest.raises(ValueError, match="Unknown or no export formats \\['onnx'\\]"):
        export.export_student(student, tmp_path, formats="saved_model,onnx", eval_data=data["test"])
    with pytest.raises(ValueError, match="needs data"):
        export.export_student(student, tmp_path, formats=["saved_model"])
    with pytest.raises(ValueError, match="Threshold for tflite_int8 must be in"):
        export.export_student(
            student, tmp_path, eval_data=data["test"], thresholds={"tflite_int8": 97}
        )
    assert not os.listdir(tmp_path)  # nothing written before the arguments are checked


def test_compare_logits_by_hand():
    result = export.compare_logits(
        [[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]],
        [[1.5, 1.0], [1.0, 0.5], [2.0, 0.0]],
        labels=[0, 1, 1],
    )
    assert result == {
        "examples": 3,
        "max_abs_logit_difference": 1.0,
        "top1_agreement": pytest.approx(2 / 3),
        "accuracy": pytest.approx(1 / 3),
        "keras_accuracy": pytest.approx(2 / 3),
    }


def test_format_table_lists_every_format(exported):
    _, reports = exported
    table = export.format_table(reports)
    assert table.splitlines()[0].startswith("| format | size | accuracy | top-1 agreement")
    for format in export.FORMATS:
        assert f"| {format} |" in table
    assert "FAIL" not in table
