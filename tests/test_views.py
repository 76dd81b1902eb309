"""Input views: Mixup, CutMix, GaussianNoise, SideInput (the KD+ sources).

Hand derivations:
* Mixup with a fixed lam = 0.25 on constant rows c = [0, 4, 8, 12]: row i of
  the view is 0.25 * c_i + 0.75 * c_j for the permuted partner j, e.g.
  i = 1, j = 3: 0.25 * 4 + 0.75 * 12 = 10. The partners form a permutation.
* CutMix with lam = 0.75 on 8x8 images: the box side is
  round(8 * sqrt(1 - 0.75)) = round(4.0) = 4, area 16 = (1 - 0.75) * 64.
  lam = 0 pastes the whole image (64), lam = 1 nothing (0).
* GaussianNoise(stddev=0.3): x_noisy - x ~ N(0, 0.3^2) element-wise.
"""

import numpy as np
import keras
import pytest

from keras_distill.views import CutMix, GaussianNoise, Mixup, SideInput


def _constant_rows(values, shape=(4, 4, 1)):
    return np.stack([np.full(shape, v, "float32") for v in values])


def _partners(view_rows, rows, lam):
    """For each view row, the index j with view = lam * x_i + (1 - lam) * x_j."""
    partners = []
    for i, row in enumerate(view_rows):
        candidates = [j for j in range(len(rows))
                      if np.allclose(row, lam * rows[i] + (1 - lam) * rows[j], atol=1e-6)]
        assert candidates, f"view row {i} is not a mix of row {i} with any row"
        partners.append(candidates[0])
    return partners


def test_mixup_fixed_lambda_is_the_hand_computed_mix():
    x = _constant_rows([0.0, 4.0, 8.0, 12.0])
    mixed, labels = Mixup(fixed_lambda=0.25, seed=1)(x, None, {})
    mixed = np.asarray(mixed)
    assert labels is None
    partners = _partners(mixed, x, 0.25)
    assert sorted(partners) == [0, 1, 2, 3]  # a permutation of the batch
    for i, j in enumerate(partners):
        np.testing.assert_allclose(mixed[i], 0.25 * x[i] + 0.75 * x[j], atol=1e-6)
    # e.g. if row 1 is paired with row 3 its pixels are 0.25 * 4 + 0.75 * 12 = 10.
    assert mixed[1, 0, 0, 0] == pytest.approx(0.25 * 4 + 0.75 * [0, 4, 8, 12][partners[1]])


def test_cutmix_box_area_matches_lambda():
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 2)).astype("float32")
    for lam, area in ((0.75, 16), (0.0, 64), (1.0, 0)):
        view = CutMix(fixed_lambda=lam, seed=3)
        mask = np.asarray(view.box_mask(x))[..., 0]
        np.testing.assert_array_equal(mask.sum(axis=(1, 2)), np.full(16, area))
        if area:
            for m in mask:  # one solid rectangle of side sqrt(area)
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                side = int(np.sqrt(area))
                assert len(rows) == side and len(cols) == side
                assert np.ptp(rows) == side - 1 and np.ptp(cols) == side - 1


def test_cutmix_pastes_another_example_inside_the_box():
    x = _constant_rows([1.0, 2.0, 3.0, 4.0], shape=(8, 8, 3))
    cut, labels = CutMix(fixed_lambda=0.75, seed=5)(x, None, {})
    cut = np.asarray(cut)
    assert labels is None
    for i in range(4):
        outside = cut[i][cut[i] == x[i]]
        inside = cut[i][cut[i] != x[i]]
        # Outside the box: the image itself; inside: one constant partner value.
        assert outside.size >= 48 * 3 and len(np.unique(inside)) <= 1


def test_cutmix_sampled_area_follows_beta():
    x = np.zeros((2000, 8, 8, 1), "float32")
    areas = np.asarray(CutMix(alpha=1.0, seed=7).box_mask(x)).mean(axis=(1, 2, 3))
    # lam ~ U(0, 1) for alpha = 1, so the pasted fraction 1 - lam (up to rounding) has mean 1/2.
    assert abs(areas.mean() - 0.5) < 0.03
    assert areas.min() >= 0.0 and areas.max() <= 1.0


def test_cutmix_refuses_non_images():
    with pytest.raises(ValueError, match=r"needs image inputs.*Mixup or GaussianNoise"):
        CutMix()(np.zeros((4, 10), "float32"), None, {})


def test_gaussian_noise_std():
    x = np.full((64, 32, 32, 1), 0.5, "float32")
    noisy, labels = GaussianNoise(stddev=0.3, seed=2)(x, None, {})
    noise = np.asarray(noisy) - x
    assert labels is None
    assert noise.std() == pytest.approx(0.3, rel=0.02)
    assert abs(noise.mean()) < 0.01
    same, _ = GaussianNoise(stddev=0.0)(x, None, {})
    np.testing.assert_array_equal(np.asarray(same), x)


def test_side_input_view_returns_the_side_input():
    u = np.arange(6, dtype="float32").reshape(2, 3)
    view = SideInput("unlabeled")
    inputs, labels = view(np.zeros((2, 3), "float32"), None, {"unlabeled": u})
    np.testing.assert_array_equal(np.asarray(inputs), u)
    assert labels is None and view.side_inputs == ("unlabeled",)


@pytest.mark.parametrize("view", [
    Mixup(alpha=0.4, fixed_lambda=0.3, seed=1), CutMix(alpha=2.0, fixed_lambda=0.5, seed=2),
    GaussianNoise(stddev=0.05, seed=3), SideInput("extra")])
def test_serialization_round_trip(view):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(view))
    assert type(restored) is type(view)
    assert restored.get_config() == view.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match="CutMix alpha must be > 0"):
        CutMix(alpha=0.0)
    with pytest.raises(ValueError, match=r"fixed_lambda must be in \[0, 1\]"):
        CutMix(fixed_lambda=1.5)
    with pytest.raises(ValueError, match="stddev must be >= 0"):
        GaussianNoise(stddev=-0.1)
    with pytest.raises(ValueError, match="Mixup alpha must be > 0"):
        Mixup(alpha=-1.0)
