"""The Distiller under mixed precision (bfloat16, float16 with loss scaling) and XLA.

Both networks are built under the policy being tested, from the same seeds as
the float32 reference, so they start from the same float32 weights (mixed
policies keep variables in float32). `conv_net`'s logits layer follows the
policy (bfloat16 / float16 logits): the terms still compute in float32,
because every `DistillationLoss` has dtype float32 and `Loss.__call__` casts
its inputs to it.
"""

import numpy as np
import keras
import pytest
import tensorflow as tf

from keras_distill.distiller import Distiller
from keras_distill.losses.kd import KD
from keras_distill.testing import conv_net

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
LOGGED = ("loss", "student_loss", "kd", "feature_distillation")


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test leaves the global policy float32, even when it fails."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _data(n=16, classes=3):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1)).astype("float32"), rng.integers(0, classes, n)


class DtypeProbe(KD):
    """KD that records the dtypes its `compute` receives (at trace time)."""

    seen = []

    def compute(self, teacher, student, labels, side_inputs):
        DtypeProbe.seen.append((teacher["logits"].dtype, student["logits"].dtype))
        return super().compute(teacher, student, labels, side_inputs)


def _distiller(policy, optimizer, kd_weight=0.9, feature_weight=0.5, student_weight=0.1,
               batch_norm=True, jit_compile="auto"):
    """Teacher (seed 0) / student (seed 1) under `policy`: KD + a feature MSE on stage2."""
    keras.mixed_precision.set_global_policy(policy)
    teacher = conv_net("teacher", 4, batch_norm=batch_norm, seed=0)
    student = conv_net("student", 4, batch_norm=batch_norm, seed=1)
    terms = [DtypeProbe(temperature=4.0, name="kd"),
             keras.distillation.FeatureDistillation("mse", "stage2", "stage2")]
    distiller = Distiller(teacher, student, terms, [kd_weight, feature_weight],
                          student_loss_weight=student_weight)
    distiller.compile(optimizer=optimizer, loss=SCE, jit_compile=jit_compile)
    keras.mixed_precision.set_global_policy("float32")
    return distiller


def _evaluate_then_train(distiller, steps=2):
    """Losses at the initial weights, logs of `steps` SGD steps, the student's weight change."""
    x, y = _data()
    before = [np.array(w) for w in distiller.student.get_weights()]
    evaluated = distiller.evaluate(x[:8], y[:8], batch_size=8, verbose=0, return_dict=True)
    history = distiller.fit(x, y, batch_size=8, epochs=1, steps_per_epoch=steps, verbose=0,
                            shuffle=False).history
    updates = [np.array(w) - b for w, b in zip(distiller.student.get_weights(), before)]
    return evaluated, history, updates


def test_bfloat16_matches_float32_and_terms_compute_in_float32():
    """mixed_bfloat16 (8-bit mantissa, relative rounding 2^-8 = 0.4% per op): the
    losses at the same weights and batch, and after 2 steps, agree with float32 within
    2% (measured: <= 0.8%, KD being the smallest term); no loss scaling is involved."""
    reference = _evaluate_then_train(_distiller("float32", keras.optimizers.SGD(0.1)))
    DtypeProbe.seen.clear()
    mixed = _distiller("mixed_bfloat16", keras.optimizers.SGD(0.1))
    assert mixed.student.outputs[0].dtype == "bfloat16"  # the network computes in bf16
    assert not isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)
    evaluated, history, updates = _evaluate_then_train(mixed)
    assert DtypeProbe.seen and all(t == s == tf.float32 for t, s in DtypeProbe.seen)
    for key in LOGGED:
        np.testing.assert_allclose(evaluated[key], reference[0][key], rtol=2e-2,
                                   err_msg=f"evaluate {key!r}")
        np.testing.assert_allclose(history[key], reference[1][key], rtol=2e-2,
                                   err_msg=f"fit {key!r}")
    for mine, single in zip(updates, reference[2]):
        np.testing.assert_allclose(mine, single, atol=2e-3)


def test_float16_scales_the_loss_and_unscales_the_gradients():
    """float16 underflows below 6e-8. With every loss weight 1e-8, the gradient reaching
    the float16 logits is ~1e-8 * (p - onehot) / 8 ~ 1e-9: 0 in float16. The
    LossScaleOptimizer (initial scale 2^20, doubling after every finite step) multiplies
    the loss by 2^20 then 2^21 before the backward pass and divides the gradients by the
    same scale: the updates (SGD, lr 1e8 so they are visible) then match float32 within
    5% (measured <= 2%: float16 rounding), where a scale of 1 loses them all (exactly 0).
    Forgetting the unscale would make them 2^20 times too big; scaling by a scale baked
    into the traced step (not the variable) would halve the second step's update."""
    tiny = dict(kd_weight=1e-8, feature_weight=1e-8, student_weight=1e-8, batch_norm=False)
    reference = _evaluate_then_train(_distiller("float32", keras.optimizers.SGD(1e8), **tiny))
    scaled = _distiller("mixed_float16", keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(1e8), initial_scale=2.0 ** 20, dynamic_growth_steps=1), **tiny)
    assert scaled.student.outputs[0].dtype == "float16"
    evaluated, history, updates = _evaluate_then_train(scaled)
    assert float(scaled.optimizer.dynamic_scale.numpy()) == 2.0 ** 22  # 2 finite steps
    for mine, single in zip(updates, reference[2]):
        assert np.abs(single).max() > 1e-2
        np.testing.assert_allclose(mine, single, atol=0.05 * np.abs(single).max())
    for key in LOGGED:  # losses at the same weights: float16 rounding (2^-11) only
        np.testing.assert_allclose(evaluated[key], reference[0][key], rtol=5e-3,
                                   err_msg=f"evaluate {key!r}")
    unscaled = _distiller("mixed_float16", keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(1e8), initial_scale=1.0), **tiny)
    _, _, lost = _evaluate_then_train(unscaled)
    assert all(np.all(update == 0.0) for update in lost)


def test_float16_overflowing_scale_skips_the_step_and_halves_the_scale():
    """A scale of 2^40 makes the scaled loss (~1e12) overflow float16 (max 65504) in the
    backward pass: the step is skipped (weights unchanged, no inf/NaN written, the
    inner optimizer's step count stays 0) and the scale halves, as Keras's own
    train_step would do. `compile` wraps a plain optimizer for float16 by itself."""
    plain = _distiller("mixed_float16", keras.optimizers.SGD(0.1), batch_norm=False)
    assert isinstance(plain.optimizer, keras.optimizers.LossScaleOptimizer)
    distiller = _distiller("mixed_float16", keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1), initial_scale=2.0 ** 40), batch_norm=False)
    _, history, updates = _evaluate_then_train(distiller, steps=1)
    assert all(np.all(update == 0.0) for update in updates)
    assert float(distiller.optimizer.dynamic_scale.numpy()) == 2.0 ** 39
    assert int(distiller.optimizer.iterations.numpy()) == 0
    assert np.isfinite(history["loss"][0])


def test_jit_compile_matches_the_graph_step_and_auto_stays_off_on_cpu():
    """XLA (jit_compile=True) runs the Distiller's train step (teacher forward, one
    student forward with taps, KD + feature term, SGD momentum): 2 steps agree with
    jit_compile=False within 1e-5 (measured: weights 6e-8, logs 2e-7). `"auto"` (the default) resolves to
    False on a CPU-only machine, where XLA was measured slower."""
    momentum = lambda: keras.optimizers.SGD(0.1, momentum=0.9)  # noqa: E731
    graph = _distiller("float32", momentum(), batch_norm=False, jit_compile=False)
    xla = _distiller("float32", momentum(), batch_norm=False, jit_compile=True)
    assert xla.jit_compile is True and graph.jit_compile is False
    x, y = _data()
    results = []
    for distiller in (graph, xla):
        history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        results.append((history.history, distiller.student.get_weights()))
    for key in LOGGED:
        np.testing.assert_allclose(results[1][0][key], results[0][0][key], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    auto = _distiller("float32", keras.optimizers.SGD(0.1), batch_norm=False)
    assert auto.jit_compile == bool(tf.config.list_physical_devices("GPU"))
