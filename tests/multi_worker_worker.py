"""One worker of the 2-worker MultiWorkerMirroredStrategy test (tests/test_distribute.py).

Run by the test as a subprocess with `TF_CONFIG` set:

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1"]},
                "task": {"type": "worker", "index": I}}' \
        python tests/multi_worker_worker.py OUTPUT.npz

Every worker builds the same tiny teacher and student (same seeds), distils
for `STEPS` global batches of `GLOBAL_BATCH` examples, and saves the student's
weights, the optimizer step and the History to OUTPUT.npz. `distil()` is also
what the test runs in its own process (default strategy) for the reference.

The dataset yields the GLOBAL batches in a fixed order with auto-sharding
policy DATA: `experimental_distribute_dataset` splits every global batch of 8
into 2 per-replica batches of 4, and worker i reads the i-th (measured:
worker 0 sees rows 0-3, 8-11, ...; worker 1 rows 4-7, 12-15, ...). The
gradients of the two halves are summed across workers and each half's loss is
scaled by 1/2 (Keras's per-replica scaling), so every step equals one step of
the single process on the whole global batch.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

STEPS = 3
GLOBAL_BATCH = 8
CLASSES = 3


def data():
    rng = np.random.default_rng(0)
    x = rng.random((STEPS * GLOBAL_BATCH, 8, 8, 1)).astype("float32")
    y = rng.integers(0, CLASSES, STEPS * GLOBAL_BATCH)
    return x, y


def dataset(x, y):
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)


def distil(strategy):
    """Builds teacher/student/Distiller in `strategy.scope()`, trains; returns results."""
    import keras

    from keras_distill.distiller import Distiller
    from keras_distill.losses.kd import KD
    from keras_distill.testing import conv_net

    x, y = data()
    with strategy.scope():
        # No BatchNorm: per-replica batch statistics differ by design from one
        # process's (use synchronized BatchNorm for that).
        teacher = conv_net("teacher", width=4, num_classes=CLASSES, batch_norm=False, seed=0)
        student = conv_net("student", width=4, num_classes=CLASSES, batch_norm=False, seed=1)
        features = keras.distillation.FeatureDistillation(
            loss="mse", teacher_layer_name="stage2", student_layer_name="stage2")
        distiller = Distiller(teacher, student, [KD(temperature=4.0), features], [0.9, 0.5],
                              student_loss_weight=0.1)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    history = distiller.fit(dataset(x, y), epochs=1, verbose=0)
    return {
        "weights": [np.asarray(w) for w in distiller.student.get_weights()],
        "iterations": int(distiller.optimizer.iterations.numpy()),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }


def main(output):
    from keras_distill import distribute

    # get_strategy("multi_worker") installs the multi-worker fixes (keras_distill.multi_worker);
    # building a Distiller does not.
    strategy = distribute.get_strategy("multi_worker", communication="ring")
    result = distil(strategy)
    arrays = {f"weight_{i}": w for i, w in enumerate(result["weights"])}
    np.savez(output, replicas=strategy.num_replicas_in_sync, iterations=result["iterations"],
             history=json.dumps(result["history"]), **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
