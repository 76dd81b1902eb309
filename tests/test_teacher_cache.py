"""Teacher-output cache: same training as the live teacher, without its forward pass."""

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill.data import make_dataset
from keras_distill.teacher_cache import TeacherCache, TeacherCacheError
from keras_distill.testing import conv_net

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _arrays(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 1)).astype("uint8"), rng.integers(0, 3, n)


def test_cache_matches_live_teacher_and_attach_follows_shuffled_indices():
    x, y = _arrays()
    teacher = conv_net("t", 4, seed=1)
    cache = TeacherCache.compute(teacher, make_dataset(x, y, batch_size=16), verbose=False)
    live = teacher.predict(x.astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(cache.outputs["logits"], live, atol=1e-5)
    train = cache.attach(make_dataset(x, y, batch_size=16, training=True, seed=3,
                                      with_index=True))
    for inputs, labels in train.take(2):
        expected = teacher.predict(inputs["inputs"], verbose=0)
        np.testing.assert_allclose(inputs["teacher_outputs"]["logits"], expected, atol=1e-5)
        np.testing.assert_array_equal(labels, y[inputs["index"].numpy()])


def test_distiller_with_cache_equals_live_teacher_training():
    x, y = _arrays(n=32)

    def train(use_cache):
        teacher, student = conv_net("t", 4, seed=1), conv_net("s", 4, seed=2, batch_norm=False)
        dataset = make_dataset(x, y, batch_size=8, training=True, seed=5, with_index=True)
        if use_cache:
            cache = TeacherCache.compute(teacher, make_dataset(x, y, batch_size=8), verbose=False)
            dataset = cache.attach(dataset)
        distiller = kd.Distiller(teacher, student, [kd.losses.KD(4.0)], [0.9],
                                 student_loss_weight=0.1)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE)
        history = distiller.fit(dataset, epochs=2, verbose=0)
        return history.history, student.get_weights()

    live_history, live_weights = train(False)
    cached_history, cached_weights = train(True)
    for key in ("loss", "kd", "student_loss"):
        np.testing.assert_allclose(live_history[key], cached_history[key], rtol=1e-5)
    for a, b in zip(live_weights, cached_weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_save_load_round_trip_and_incomplete_cache(tmp_path):
    x, y = _arrays()
    cache = TeacherCache.compute(conv_net("t", 4), make_dataset(x, y, batch_size=16),
                                 taps=("embedding",), verbose=False)
    cache.save(tmp_path / "cache", shard_size=20)  # 48 rows -> 3 shards per output
    assert len(list((tmp_path / "cache").glob("logits-*.npy"))) == 3
    loaded = TeacherCache.load(tmp_path / "cache")
    for name in ("logits", "embedding"):
        np.testing.assert_array_equal(loaded.outputs[name], cache.outputs[name])
    (tmp_path / "cache" / "index.json").unlink()  # as if killed before the index was written
    with pytest.raises(TeacherCacheError, match="No complete teacher cache"):
        TeacherCache.load(tmp_path / "cache")


def test_verify_catches_another_teacher_and_augmented_pipelines_are_refused():
    x, y = _arrays()
    teacher = conv_net("t", 4, seed=1)
    cache = TeacherCache.compute(teacher, make_dataset(x, y, batch_size=16), verbose=False)
    scale = lambda batch: batch.astype("float32") / 255.0  # noqa: E731
    assert cache.verify(teacher, x, normalize=scale) < 1e-5
    with pytest.raises(TeacherCacheError, match="differ from the live teacher"):
        cache.verify(conv_net("other", 4, seed=9), x, normalize=scale)
    TeacherCache.check_pipeline("none")
    with pytest.raises(TeacherCacheError, match="augments its inputs.*augment='none'"):
        TeacherCache.check_pipeline("crop_flip")


def test_cache_missing_a_tap_the_terms_read_is_refused():
    x, y = _arrays(n=16)
    teacher, student = conv_net("t", 4), conv_net("s", 4)
    cache = TeacherCache.compute(teacher, make_dataset(x, y, batch_size=8), verbose=False)
    distiller = kd.Distiller(teacher, student, [keras.distillation.FeatureDistillation(
        "mse", "embedding", "embedding")])
    distiller.compile(optimizer="sgd", loss=SCE)
    dataset = cache.attach(make_dataset(x, y, batch_size=8, with_index=True))
    with pytest.raises(ValueError, match=r"also read \['embedding'\].*taps="):
        distiller.fit(dataset, verbose=0)
