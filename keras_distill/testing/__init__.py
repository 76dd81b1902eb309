"""Reusable test helpers for method authors.

Every method must show: a hand-computed value, zero (or minimal) when the
student equals the teacher, no gradient reaching the teacher, and the same
result on 1 and 2 replicas. These helpers make the last three one-liners.
"""

import numpy as np
import keras
import tensorflow as tf


_TWO_REPLICA_STRATEGY = []


def two_replica_strategy():
    """The 2-replica `MirroredStrategy` on 2 logical CPU devices (one per process).

    The same object is returned on every call: each new `MirroredStrategy`
    restarts its collective-op keys, so collectives run in replica context
    (`all_gather`, `all_reduce`, synchronized BatchNorm) by a second strategy
    in the same process clash with the first ("Shape mismatch in the
    collective instance").

    The test session must have split the CPU before TensorFlow initialised
    (`tests/conftest.py` does), else this raises with how to fix it.
    """
    if _TWO_REPLICA_STRATEGY:
        return _TWO_REPLICA_STRATEGY[0]
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        raise RuntimeError(
            "Need 2 logical CPU devices: call tf.config.set_logical_device_configuration("
            "cpu, [tf.config.LogicalDeviceConfiguration()] * 2) before TensorFlow "
            "initialises (see tests/conftest.py).")
    _TWO_REPLICA_STRATEGY.append(tf.distribute.MirroredStrategy([cpus[0].name, cpus[1].name]))
    return _TWO_REPLICA_STRATEGY[0]


def conv_net(name, width=8, num_classes=3, input_shape=(8, 8, 1), batch_norm=True,
             seed=0, stages=2):
    """A tiny functional CNN with named taps `stage1..stageN`, `embedding`, `logits`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    hidden = inputs
    for stage in range(1, stages + 1):
        hidden = keras.layers.Conv2D(width * stage, 3, padding="same",
                                     name=f"conv{stage}")(hidden)
        if batch_norm:
            hidden = keras.layers.BatchNormalization(name=f"bn{stage}")(hidden)
        hidden = keras.layers.ReLU(name=f"stage{stage}")(hidden)
    embedding = keras.layers.GlobalAveragePooling2D(name="embedding")(hidden)
    logits = keras.layers.Dense(num_classes, name="logits")(embedding)
    return keras.Model(inputs, logits, name=name)


def random_outputs(batch=4, num_classes=5, seed=0, taps=None):
    """Random teacher/student output dicts for loss tests.

    Args:
        batch: Batch size.
        num_classes: Number of classes.
        seed: NumPy seed.
        taps: Optional dict tap name -> (teacher_shape, student_shape),
            shapes without the batch dimension.

    Returns:
        `(teacher, student, labels)` with float32 numpy arrays.
    """
    rng = np.random.default_rng(seed)
    teacher = {"logits": rng.normal(size=(batch, num_classes)).astype("float32") * 2}
    student = {"logits": rng.normal(size=(batch, num_classes)).astype("float32") * 2}
    for name, (t_shape, s_shape) in (taps or {}).items():
        teacher[name] = rng.normal(size=(batch,) + tuple(t_shape)).astype("float32")
        student[name] = rng.normal(size=(batch,) + tuple(s_shape)).astype("float32")
    labels = rng.integers(0, num_classes, size=(batch,))
    return teacher, student, labels


def term_value(term, teacher, student, labels=None, side_inputs=None, sample_weight=None,
               training=False):
    """Calls a term as the trainers do (`y_pred["training"]` a Python bool); returns a float."""
    y_true = labels if labels is not None else 0.0
    value = term(y_true, {"teacher": teacher, "student": student,
                          "side_inputs": side_inputs or {}, "training": bool(training)},
                 sample_weight=sample_weight)
    return float(keras.ops.convert_to_numpy(value))


def build_term(term, teacher, student):
    """Builds a term from example outputs' shapes (as the Distiller would)."""
    if not term.built:
        term.build({k: (None,) + tuple(np.shape(v)[1:]) for k, v in teacher.items()},
                   {k: (None,) + tuple(np.shape(v)[1:]) for k, v in student.items()})
    return term


def teacher_gradients(term, teacher, student, labels=None, side_inputs=None):
    """Gradients of a term w.r.t. the teacher's outputs and the student's.

    Returns:
        `(teacher_grads, student_grads)`: dicts tap -> gradient (None when
        none flows). The Distiller stops the teacher's gradient anyway; a
        correct term must still give the student a gradient.
    """
    t_vars = {k: tf.Variable(v) for k, v in teacher.items()}
    s_vars = {k: tf.Variable(v) for k, v in student.items()}
    with tf.GradientTape(persistent=True) as tape:
        t = {k: tf.stop_gradient(v) for k, v in t_vars.items()}
        value = term(labels if labels is not None else 0.0,
                     {"teacher": t, "student": dict(s_vars), "side_inputs": side_inputs or {},
                      "training": True})
    t_grads = {k: tape.gradient(value, v) for k, v in t_vars.items()}
    s_grads = {k: tape.gradient(value, v) for k, v in s_vars.items()}
    return t_grads, s_grads


def train_two_steps(make_distiller, x, y, strategy, batch_size=8, steps=2,
                    optimizer_fn=None, side_inputs=None):
    """Builds a Distiller inside `strategy.scope()`, trains `steps` steps, returns results.

    Args:
        make_distiller: `() -> Distiller` (called inside the scope).
        x, y: Arrays; the first `steps * batch_size` examples are used in order.
        strategy: A `tf.distribute.Strategy`.
        batch_size: Global batch size.
        steps: Number of steps.
        optimizer_fn: `() -> optimizer`; default SGD(0.1).
        side_inputs: Optional dict of arrays added as side inputs.

    Returns:
        `(history_dict, student_weights)`.
    """
    n = steps * batch_size
    inputs = x[:n] if side_inputs is None else {
        "inputs": x[:n], **{k: v[:n] for k, v in side_inputs.items()}}
    dataset = tf.data.Dataset.from_tensor_slices((inputs, y[:n])).batch(batch_size)
    with strategy.scope():
        distiller = make_distiller()
        distiller.compile(
            optimizer=(optimizer_fn or (lambda: keras.optimizers.SGD(0.1)))(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(dataset, epochs=1, verbose=0, shuffle=False)
    weights = [np.array(w) for w in distiller.student.get_weights()]
    return history.history, weights


def assert_replica_equivalence(make_distiller, x, y, batch_size=8, steps=2, atol=1e-5,
                               side_inputs=None):
    """Asserts 1-replica and 2-replica training give the same losses and weights.

    Use students without per-replica BatchNorm statistics (no BN, or
    `BatchNormalization(synchronized=True)`): local-batch statistics differ
    by design between 1 and 2 replicas.
    """
    single_history, single_weights = train_two_steps(
        make_distiller, x, y, tf.distribute.get_strategy(), batch_size, steps,
        side_inputs=side_inputs)
    double_history, double_weights = train_two_steps(
        make_distiller, x, y, two_replica_strategy(), batch_size, steps,
        side_inputs=side_inputs)
    for key, values in single_history.items():
        np.testing.assert_allclose(values, double_history[key], atol=atol, rtol=1e-4,
                                   err_msg=f"logged {key!r} differs between 1 and 2 replicas")
    for a, b in zip(single_weights, double_weights):
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-4,
                                   err_msg="student weights differ between 1 and 2 replicas")
    return single_history, double_history
