"""DPK (Zong, Qiu et al., ICLR 2023): hand values, token mixing, dynamic ratio, adapters, replicas.

Hand derivation (test_golden_values). One stage, 2x2 maps with 2 channels,
`patch_size=1` (a token per pixel), `depth=0` (no blocks) and the codec set
to the identity: aligners = identity 1x1 convolutions, decoder = identity
transposed convolution, biases 0. Then decoder(hybrid) is, pixel by pixel,
the teacher's vector where the token is the teacher's and the student's
elsewhere. Every teacher pixel is t = [3, 1], every student pixel s = [0, 2]:

    teacher pixel:  (t - t)^2 = 0
    student pixel:  mean_c (s - t)^2 = ((0 - 3)^2 + (2 - 1)^2) / 2 = 5

    r = 0 (all teacher):  L = 0             (the minimal case: exact prior)
    r = 1 (all student):  L = 5             (plain MSE(student, teacher))
    r in between:         L = 5 * (share of student tokens) = 5 * mean(u < r)

A second stage "b" with t = [1, 1], s = [1, -1] adds (0 + 4) / 2 = 2 at
r = 1, so two stages give 5 + 2 = 7 (stages are summed, as in the public
re-implementation).

Dynamic ratio (test_ratio_update_rule, test_ratio_moves_toward_cka_...): one
train step must give r_1 = m * r_0 + (1 - m) * CKA, with CKA from
keras_distill.ops.linear_cka on the pre-step encoded tokens (or raw maps) of the batch.
"""

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill.adapters.dpk import PriorKnowledgeCodec
from keras_distill.losses.base import DistillationLoss
from keras_distill.losses.dpk import DPK, resolve_patch_size
from keras_distill.losses.kd import KD
from keras_distill.ops import linear_cka
from keras_distill.testing import (assert_replica_equivalence, build_term, conv_net,
                                   teacher_gradients, term_value)

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _maps(pixel, batch=3, size=2):
    return np.tile(np.asarray(pixel, "float32"), (batch, size, size, 1))


def _identity_codec(codec, channels):
    """Aligners = identity patch-to-token maps, decoder = their inverse, biases 0."""
    p = codec.patch_size
    kernel = np.zeros((p, p, channels, p * p * channels), "float32")
    for i in range(p):
        for j in range(p):
            for c in range(channels):
                kernel[i, j, c, (i * p + j) * channels + c] = 1.0
    for aligner in (codec.student_aligner, codec.teacher_aligner):
        aligner.projection.kernel.assign(kernel)
        aligner.projection.bias.assign(np.zeros(p * p * channels, "float32"))
    codec.unembedding.kernel.assign(kernel)  # (p, p, out, in): the inverse map
    codec.unembedding.bias.assign(np.zeros(channels, "float32"))


def _golden_term(initial_ratio, stages=("a",), seed=0):
    term = DPK(teacher_taps=stages, patch_size=1, width=2, depth=0, momentum=1.0,
               initial_ratio=initial_ratio, seed=seed)
    teacher = {"logits": np.zeros((3, 2), "float32"), "a": _maps([3, 1])}
    student = {"logits": np.zeros((3, 2), "float32"), "a": _maps([0, 2])}
    if "b" in stages:
        teacher["b"], student["b"] = _maps([1, 1]), _maps([1, -1])
    build_term(term, teacher, student)
    for codec in term.codecs:
        _identity_codec(codec, 2)
    return term, teacher, student


@pytest.mark.parametrize("ratio, stages, expected", [
    (0.0, ("a",), 0.0), (1.0, ("a",), 5.0), (1.0, ("a", "b"), 7.0), (0.0, ("a", "b"), 0.0)])
def test_golden_values(ratio, stages, expected):
    term, teacher, student = _golden_term(ratio, stages)
    assert term_value(term, teacher, student) == pytest.approx(expected, abs=1e-6)


def test_golden_value_of_a_partial_mix_replays_the_mask():
    term, teacher, student = _golden_term(0.6, seed=7)
    value = term_value(term, teacher, student)
    # The codec of stage 0 draws u ~ U[0,1) of shape (1, 2, 2, 1) from SeedGenerator(7 + 0).
    u = keras.ops.convert_to_numpy(keras.random.uniform(
        (1, 2, 2, 1), seed=keras.random.SeedGenerator(7)))
    assert value == pytest.approx(5.0 * np.mean(u < 0.6), abs=1e-6)


# ------------------------------------------------------------------ mixing
def test_teacher_share_is_one_minus_ratio_statistically():
    codec = PriorKnowledgeCodec(1, 1, 1, depth=0, seed=3)
    zeros, ones = np.zeros((2, 16, 16, 1), "float32"), np.ones((2, 16, 16, 1), "float32")
    draws = 10
    shares = [float(np.mean(codec.mix(zeros, ones, 0.3))) for _ in range(draws)]
    n = draws * 16 * 16
    std = np.sqrt(0.7 * 0.3 / n)  # binomial standard deviation of the share: 0.0091
    assert np.mean(shares) == pytest.approx(0.7, abs=4 * std)
    assert len(set(shares)) > 1  # a new mask every call (the seed stream advances)
    assert float(np.max(codec.mix(zeros, ones, 1.0))) == 0.0  # r = 1: all student
    assert float(np.min(codec.mix(zeros, ones, 0.0))) == 1.0  # r = 0: all teacher


def test_mask_is_per_patch_and_shared_by_the_batch():
    term = DPK(teacher_taps="a", patch_size=2, width=8, depth=0, momentum=1.0,
               initial_ratio=0.5, seed=1)
    teacher = {"logits": np.zeros((4, 2), "float32"), "a": _maps([1, 1], batch=4, size=8)}
    student = {"logits": np.zeros((4, 2), "float32"), "a": _maps([0, 0], batch=4, size=8)}
    build_term(term, teacher, student)
    codec = term.codecs[0]
    _identity_codec(codec, 2)
    decoded = keras.ops.convert_to_numpy(codec(student["a"], teacher["a"], ratio=0.5))
    assert set(np.unique(decoded)) <= {0.0, 1.0} and 0 < decoded.mean() < 1
    blocks = decoded[..., 0].reshape(4, 4, 2, 4, 2)  # (batch, grid_h, p, grid_w, p)
    assert np.all(blocks == blocks[:, :, :1, :, :1])  # constant inside each 2x2 patch
    assert np.all(decoded == decoded[:1])  # the same mask for every example


def test_patch_size_resolution():
    assert [resolve_patch_size(4, s, s) for s in (32, 16, 8, 4, 2, 1)] == [4, 4, 4, 2, 1, 1]
    assert resolve_patch_size(4, 12, 6) == 3
    term = DPK(("stage1", "stage2"), seed=0)
    build_term(term, *[{"logits": np.zeros((1, 3)), "stage1": np.zeros((1, 16, 16, 4)),
                        "stage2": np.zeros((1, 8, 8, 8))}] * 2)
    assert [c.patch_size for c in term.codecs] == [4, 4]
    assert [c.width for c in term.codecs] == [4, 8]  # default width: the student's channels


# ------------------------------------------------------- training behaviour
@pytest.mark.parametrize("cka_features", ["encoded", "raw"])
def test_ratio_update_rule(cka_features):
    rng = np.random.default_rng(5)
    teacher = {"logits": np.zeros((6, 3), "float32"),
               "a": rng.normal(size=(6, 4, 4, 5)).astype("float32")}
    student = {"logits": np.zeros((6, 3), "float32"),
               "a": (teacher["a"][..., :3] + rng.normal(size=(6, 4, 4, 3))).astype("float32")}
    term = build_term(DPK("a", momentum=0.8, initial_ratio=0.4, cka_features=cka_features,
                          seed=0), teacher, student)
    codec = term.codecs[0]
    pair = codec.encode(student["a"], teacher["a"]) if cka_features == "encoded" else (
        student["a"], teacher["a"])
    similarity = float(linear_cka(*pair))
    term_value(term, teacher, student, training=True)
    assert float(term.ratios[0]) == pytest.approx(0.8 * 0.4 + 0.2 * similarity, rel=1e-5)
    term_value(term, teacher, student, training=True)  # a second step moves it again
    second = 0.8 * (0.8 * 0.4 + 0.2 * similarity) + 0.2 * similarity
    assert float(term.ratios[0]) == pytest.approx(second, rel=1e-5)
    term_value(term, teacher, student, training=False)  # evaluation reads only
    assert float(term.ratios[0]) == pytest.approx(second, rel=1e-5)


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1)).astype("float32"), rng.integers(0, 3, n)


def _distiller(taps=("stage2",), seed=0):
    teacher = conv_net("t", 8, batch_norm=True, seed=1)
    student = conv_net("s", 4, batch_norm=False, seed=2)
    return kd.Distiller(teacher, student, [KD(4.0), DPK(taps, patch_size=4, seed=seed)],
                        [1.0, 1.0])


@pytest.fixture(scope="module")
def trained():
    """One graph-mode train step of KD + DPK on the whole batch, then an evaluation."""
    x, y = _data()
    distiller = _distiller()
    term = distiller.get_term("dpk")
    codec = term.codecs[0]
    extract = lambda model, tap: keras.Model(model.input, model.get_layer(tap).output)(x)
    tokens = codec.encode(extract(distiller.student, "stage2"),  # no BN: train == inference
                          extract(distiller.teacher, "stage2"))
    expected_ratio = 0.9 * 0.5 + 0.1 * float(linear_cka(*tokens))
    adapter_vars = [v for a in distiller.adapters for v in a.trainable_variables]
    before = [v.numpy().copy() for v in adapter_vars]
    teacher_before = [w.copy() for w in distiller.teacher.get_weights()]
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE)
    history = distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    ratio_after_fit = float(term.ratios[0])
    logs = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    return dict(x=x, distiller=distiller, expected_ratio=expected_ratio,
                history=history.history, ratio_after_fit=ratio_after_fit, logs=logs,
                adapter_vars=adapter_vars, before=before, teacher_before=teacher_before)


def test_ratio_moves_toward_cka_in_a_train_step_and_is_logged(trained):
    term = trained["distiller"].get_term("dpk")
    assert trained["ratio_after_fit"] == pytest.approx(trained["expected_ratio"], rel=1e-5)
    assert trained["history"]["dpk_ratio_stage2"][0] == pytest.approx(
        trained["ratio_after_fit"], rel=1e-6)
    assert float(term.ratios[0]) == trained["ratio_after_fit"]  # evaluation reads only
    assert trained["logs"]["dpk_ratio_stage2"] == pytest.approx(trained["ratio_after_fit"])
    assert trained["logs"]["dpk"] > 0


def test_adapters_train_and_no_gradient_reaches_the_teacher(trained):
    distiller, adapter_vars = trained["distiller"], trained["adapter_vars"]
    assert adapter_vars and all(any(v is w for w in distiller.trainable_variables)
                                for v in adapter_vars)
    changed = [not np.allclose(b, v.numpy()) for b, v in zip(trained["before"], adapter_vars)]
    assert all(changed), [v.path for v, c in zip(adapter_vars, changed) if not c]
    for a, b in zip(trained["teacher_before"], distiller.teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_adapters_are_never_part_of_the_student(trained, tmp_path):
    student, x = trained["distiller"].student, trained["x"]
    assert not any(v is w for v in trained["adapter_vars"] for w in student.weights)
    student.save(tmp_path / "student.keras")
    restored = keras.saving.load_model(tmp_path / "student.keras")
    assert len(restored.weights) == len(student.weights)
    assert restored.count_params() == student.count_params()
    np.testing.assert_allclose(restored.predict(x, verbose=0), student.predict(x, verbose=0),
                               atol=1e-6)


def test_ratio_codec_and_mask_stream_are_checkpointed(trained, tmp_path):
    distiller = trained["distiller"]
    distiller.save_weights(tmp_path / "d.weights.h5")
    restored = _distiller()
    restored.load_weights(tmp_path / "d.weights.h5")
    assert float(restored.get_term("dpk").ratios[0]) == trained["ratio_after_fit"] != 0.5
    for a, b in zip(distiller.adapters, restored.adapters):
        assert len(a.variables) == len(b.variables)
        for v, w in zip(a.variables, b.variables):  # includes the seed generator state
            np.testing.assert_array_equal(v.numpy(), w.numpy())
    assert distiller.adapters[0].seed_generator.state.numpy()[1] > 0


@pytest.mark.slow
def test_prior_knowledge_makes_the_target_learnable():
    """The minimal case: with r = 0 (teacher tokens only) the codec learns the identity.

    Fresh random maps every step, the student's unrelated to the teacher's: from
    teacher tokens the decoder can reach ~0; from student tokens only (r = 1) it
    cannot beat predicting the mean (the teacher's variance, 1).
    """
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 80, 8, 4, 4, 2)).astype("float32")  # (who, step, batch, ...)
    logits = tf.zeros((8, 2))

    def train(ratio):
        keras.utils.set_random_seed(0)
        outputs = {"logits": np.zeros((8, 2), "float32"), "a": maps[0, 0]}
        term = build_term(DPK("a", patch_size=2, width=8, momentum=1.0,
                              initial_ratio=ratio, seed=0), outputs, outputs)
        variables = [v for a in term.adapters for v in a.trainable_variables]
        optimizer = keras.optimizers.Adam(0.03)
        optimizer.build(variables)  # before tracing: one trace, not two

        @tf.function
        def step(teacher_map, student_map):
            with tf.GradientTape() as tape:
                value = term(0.0, {"teacher": {"logits": logits, "a": teacher_map},
                                   "student": {"logits": logits, "a": student_map},
                                   "training": True})
            optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
            return value

        values = [float(step(maps[0, i], maps[1, i])) for i in range(maps.shape[1])]
        return np.mean(values[:5]), np.mean(values[-10:])

    first, last = train(0.0)
    assert last < 0.05 * first
    _, last_student_only = train(1.0)
    assert last_student_only > 0.7


def test_gradient_reaches_the_student_and_never_the_teacher():
    rng = np.random.default_rng(0)
    teacher = {"logits": np.zeros((4, 3), "float32"),
               "stage2": rng.normal(size=(4, 8, 8, 6)).astype("float32")}
    student = {"logits": np.zeros((4, 3), "float32"),
               "stage2": rng.normal(size=(4, 8, 8, 3)).astype("float32")}
    term = build_term(DPK("stage2", seed=0), teacher, student)
    t_grads, s_grads = teacher_gradients(term, teacher, student)
    assert t_grads["stage2"] is None
    assert float(np.abs(s_grads["stage2"].numpy()).sum()) > 0
    # The term stops the teacher's gradient itself, even if the caller did not.
    t_var = tf.Variable(teacher["stage2"])
    with tf.GradientTape() as tape:
        value = term(0.0, {"teacher": {"logits": teacher["logits"], "stage2": t_var},
                           "student": student})
    assert tape.gradient(value, t_var) is None


def test_one_and_two_replicas_agree():
    x, y = _data(n=16)
    single, double = assert_replica_equivalence(_distiller, x, y, batch_size=8, steps=2)
    assert single["dpk"][0] > 0 and single["dpk_ratio_stage2"][0] != 0.5


# ------------------------------------------------------- extra metrics hook
class _StepCounter(DistillationLoss):
    """A term that counts its train calls in a state variable and reports it."""

    def build(self, teacher_shapes, student_shapes):
        self.count = self.add_state_variable("count", 0.0)
        self.built = True

    def extra_metrics(self):
        return {"count": self.count, "twice": 2.0 * keras.ops.convert_to_tensor(self.count)}

    def compute(self, teacher, student, labels, side_inputs):
        if self.training:
            self.count.assign(self.count + 1.0)
        return keras.ops.zeros_like(student["logits"][:, 0])


def test_extra_metrics_hook_logs_term_values_under_the_term_name():
    x, y = _data(n=24)
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4),
                             {"counter": _StepCounter(name="c"), "kd": KD(4.0)})
    distiller.compile(optimizer="sgd", loss=SCE)
    history = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    assert history.history["counter_count"] == [3.0, 6.0]  # the last step's value
    assert history.history["counter_twice"] == [6.0, 12.0]
    assert history.history["val_counter_count"] == [3.0, 6.0]  # evaluation does not count
    assert "kd_count" not in history.history  # terms without extras add nothing


# ------------------------------------------------------ config and errors
def test_serialization_round_trip():
    term = DPK(("stage1", "stage2"), student_taps=("s1", "s2"), patch_size=[2, 1], width=6,
               depth=2, momentum=0.8, initial_ratio=0.3, cka_features="raw", seed=5, name="prior")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, DPK)
    assert restored.get_config() == term.get_config()
    assert restored.student_taps == ("s1", "s2") and restored.patch_size == [2, 1]
    distiller = _distiller(taps=("stage1", "stage2"))
    again = kd.Distiller.from_config(distiller.get_config())
    assert again.get_term("dpk").get_config() == distiller.get_term("dpk").get_config()
    codec = distiller.adapters[0]
    assert PriorKnowledgeCodec.from_config(codec.get_config()).get_config() == codec.get_config()


@pytest.mark.parametrize("kwargs, message", [
    (dict(momentum=1.5), r"momentum must be in \[0, 1\]"),
    (dict(initial_ratio=-0.1), r"initial_ratio must be in \[0, 1\]"),
    (dict(cka_features="gram"), r"cka_features must be one of \('encoded', 'raw'\)"),
    (dict(student_taps=("stage1",)), "one student tap per teacher tap"),
    (dict(patch_size=0), "patch_size must be a positive int or one per stage"),
    (dict(patch_size=[2]), r"one per stage \(2\)"),
    (dict(teacher_taps=("stage1", "stage1")), "must be distinct"),
])
def test_bad_arguments_are_refused(kwargs, message):
    kwargs = {"teacher_taps": ("stage1", "stage2"), **kwargs}
    with pytest.raises(ValueError, match=message):
        DPK(**kwargs)


def test_bad_taps_are_refused_at_construction():
    teacher, student = conv_net("t", 8), conv_net("s", 4)
    with pytest.raises(ValueError, match=r"feature maps.*'embedding' has shape \(None, 16\)"):
        kd.Distiller(teacher, student, [DPK("embedding")])
    with pytest.raises(ValueError, match=r"\(8x8\) and student tap 'a' \(4x4\) need the same"):
        DPK("a").build({"a": (None, 8, 8, 4)}, {"a": (None, 4, 4, 4)})
    with pytest.raises(ValueError, match=r"patch_size 3 does not divide the 8x8 maps"):
        kd.Distiller(teacher, student, [DPK("stage1", patch_size=[3])])
