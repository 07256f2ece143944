"""kNN label transfer and k-means on feature arrays with known answers."""
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from densechange.engine.errors import ConfigError
from densechange.pretrain.config import PretrainProbeConfig
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.features import PixelSet
from densechange.pretrain.probe.score import probe_settings, score_pixels
from densechange.pretrain.probe.search import image_folds, ivf_lists, kmeans_clusters, knn_label_transfer, knn_vote


def pixels_encoding_labels(classes=3, images=12, per_image=150, noise=0.3, dim=16, seed=0):
    """Features = 3 x one-hot(label) + noise in the first dims, pure noise in the rest."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, images * per_image)
    feats = rng.normal(0, noise, (labels.size, dim)).astype(np.float32)
    feats[np.arange(labels.size), labels] += 3.0
    return PixelSet(feats, labels, np.repeat(np.arange(images), per_image))


def random_pixels(classes=3, images=12, per_image=200, dim=16, seed=1):
    rng = np.random.default_rng(seed)
    n = images * per_image
    return PixelSet(rng.normal(size=(n, dim)).astype(np.float32), rng.integers(0, classes, n), np.repeat(np.arange(images), per_image))


def test_vote_weighs_neighbours_by_exp_cosine_over_temperature():
    sim = np.array([[0.9, 0.8, 0.1]])
    labels = np.array([[0, 1, 1]])
    # T=1: class 0 gets e^-0.1 = 0.905, class 1 gets e^-0.2 + e^-0.9 = 1.226.
    assert knn_vote(sim, labels, 2, temperature=1.0).tolist() == [1]
    # T=0.05: class 0 gets e^-2 = 0.135, class 1 gets e^-4 + e^-18 = 0.018.
    assert knn_vote(sim, labels, 2, temperature=0.05).tolist() == [0]
    # Missing neighbours (label -1) do not vote.
    assert knn_vote(np.array([[0.2, 1.0]]), np.array([[1, -1]]), 2, 0.1).tolist() == [1]


def test_folds_keep_each_image_whole():
    images = np.repeat([7, 3, 9, 1, 4], 4)
    fold = image_folds(images, folds=2, seed=0)
    for image in np.unique(images):
        assert np.unique(fold[images == image]).size == 1
    assert sorted(np.bincount(fold).tolist()) == [8, 12]  # 5 images in 2 folds: 2 and 3 images
    assert np.unique(image_folds(images, folds=50, seed=0)).size == 5  # at most one fold per image
    with pytest.raises(ValueError, match="at least 2 images"):
        image_folds(np.zeros(4, int), folds=2, seed=0)


def test_no_pixel_is_labelled_from_its_own_image():
    # Identical features everywhere; image 0 is all class 0, image 1 all class 1: each must take the other's label.
    feats = np.ones((20, 4), np.float32)
    labels = np.repeat([0, 1], 10)
    pred, index = knn_label_transfer(feats, labels, np.repeat([0, 1], 10), num_classes=2, settings=ProbeConfig(k=5, folds=2))
    assert pred.tolist() == (1 - labels).tolist()
    assert index.startswith("exact")


def test_an_ivf_index_serves_sets_above_the_exact_limit():
    px = pixels_encoding_labels(images=12, per_image=400)  # 4800 pixels
    exact = score_pixels(px, 3, ProbeConfig(k=10, folds=4))
    ivf = score_pixels(px, 3, ProbeConfig(k=10, folds=4, exact_max=1000, nprobe=8))
    assert exact.knn_index.startswith("exact") and ivf.knn_index.startswith("ivf (nlist=")
    assert ivf_lists(1_000_000) == 4000 and ivf_lists(4800) == 4800 // 39  # 4 sqrt(N), at most N / 39 lists
    assert ivf.knn_accuracy > 0.99 and abs(ivf.knn_miou - exact.knn_miou) < 0.01
    again = score_pixels(px, 3, ProbeConfig(k=10, folds=4, exact_max=1000, nprobe=8))
    assert again.knn_miou == ivf.knn_miou  # the seeded quantizer gives the same lists every time


def test_scores_are_near_perfect_on_features_that_encode_the_labels():
    result = score_pixels(pixels_encoding_labels(), 3, ProbeConfig(k=10, folds=4))
    assert result.knn_miou > 0.99 and result.knn_accuracy > 0.99
    assert result.kmeans_nmi > 0.95 and result.kmeans_purity > 0.99
    assert result.clusters == 3 and result.pixels == 12 * 150 and result.images == 12


def test_scores_are_at_chance_on_random_features():
    c = 3
    result = score_pixels(random_pixels(classes=c), c, ProbeConfig(k=20, folds=4))
    # Random predictions of C balanced classes: IoU = (1/C^2) / (2/C - 1/C^2) = 1 / (2C - 1) per class.
    assert result.knn_miou == pytest.approx(1 / (2 * c - 1), abs=0.04)
    assert result.knn_accuracy == pytest.approx(1 / c, abs=0.04)
    assert result.kmeans_nmi < 0.02
    assert result.kmeans_purity == pytest.approx(1 / c, abs=0.05)


def test_scores_are_deterministic_for_a_seed():
    a = score_pixels(random_pixels(), 3, ProbeConfig(), seed=4)
    b = score_pixels(random_pixels(), 3, ProbeConfig(), seed=4)
    assert a == b


def test_kmeans_uses_every_point():
    # Two blobs; faiss would cluster a 256-per-centroid subsample by default. Converged centroids
    # equal the means of *all* points assigned to them only when every point took part.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (3000, 4)), rng.normal(8, 1, (2000, 4))]).astype(np.float32)
    assign, centres = kmeans_clusters(x, 2, iters=30, seed=0, spherical=False)
    assert sorted(np.bincount(assign).tolist()) == [2000, 3000]
    for c in range(2):
        np.testing.assert_allclose(centres[c], x[assign == c].mean(0), atol=1e-4)


def test_kmeans_needs_at_least_k_points():
    with pytest.raises(ValueError, match="at least K points"):
        kmeans_clusters(np.ones((3, 2), np.float32), 4)


def test_score_rejects_labels_outside_the_classes():
    px = pixels_encoding_labels(classes=3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        score_pixels(px, 2, ProbeConfig())
    empty = PixelSet(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="no pixels"):
        score_pixels(empty, 2, ProbeConfig())
    assert math.isfinite(score_pixels(px, 3, ProbeConfig(clusters=6)).kmeans_purity)


@pytest.mark.parametrize("bad, key", [(dict(k=0), "probe.k"), (dict(temperature=0.0), "probe.temperature"),
                                      (dict(folds=1), "probe.folds"), (dict(exact_max=-1), "probe.exact_max"),
                                      (dict(nprobe=0), "probe.nprobe"), (dict(max_pixels=0), "probe.max_pixels")])
def test_probe_settings_check_their_values_when_built(bad, key):
    with pytest.raises(ConfigError, match=key):
        ProbeConfig(**bad)
    section = OmegaConf.merge(OmegaConf.structured(PretrainProbeConfig), OmegaConf.create(bad))
    with pytest.raises(ConfigError, match=key):  # a config section is checked when the probe's settings are made
        probe_settings(section)
