"""faiss searches behind the probes: cosine kNN label transfer and k-means.

Features are L2-normalised, so inner product is cosine similarity. Up to ``exact_max`` pixels the
kNN search is exact (``IndexFlatIP``), whose cost grows with the square of the pixel count; above
it, an inverted-file index (``IndexIVFFlat``, ``4 * sqrt(N)`` lists trained once on all pixels,
``nprobe`` lists searched per query) keeps the cost near linear. faiss-cpu is the default; when
faiss has GPU support and sees a GPU (``faiss.get_num_gpus() > 0``) the same calls build GPU
indexes and GPU k-means.

faiss k-means silently subsamples to ``max_points_per_centroid`` points per centroid (256 by
default); here the limit is raised to the number of points, so every selected pixel is clustered.

Example:
    >>> pred, index = knn_label_transfer(features, labels, images, num_classes=2, settings=ProbeConfig(k=20, folds=5))
    >>> clusters = kmeans_clusters(features, 2, seed=0)
"""
from __future__ import annotations

import faiss
import numpy as np

from densechange.datasets.errors import DatasetError
from densechange.engine.errors import ConfigError
from densechange.pretrain.probe.config import ProbeConfig

__all__ = ["faiss_gpu_available", "l2_normalise", "ivf_lists", "knn_index", "knn_votes", "knn_vote",
           "knn_label_transfer", "image_folds", "kmeans_clusters"]

MIN_POINTS_PER_LIST = 39  # faiss warns when an IVF list is trained on fewer points


def faiss_gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length, as contiguous float32 (what faiss takes)."""
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps))


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` points: about ``4 * sqrt(n)``, with at least 39 training points per list."""
    return int(max(1, min(round(4 * np.sqrt(n)), n // MIN_POINTS_PER_LIST)))


def knn_index(x: np.ndarray, *, exact_max: int, nprobe: int, seed: int, metric: str = "ip") -> tuple[faiss.Index, str]:
    """An empty CPU index for searches among the rows of ``x``, and its description.

    Exact (``IndexFlatIP``, or ``IndexFlatL2`` for ``metric="l2"``) up to ``exact_max`` rows; above,
    ``IndexIVFFlat`` trained on ``x`` (the quantizer is seeded, so the lists are the same on every run).
    """
    n, d = x.shape
    flat = faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP
    if n <= exact_max:
        return flat(d), f"exact ({n} <= probe.exact_max={exact_max})"
    nlist = ivf_lists(n)
    index = faiss.IndexIVFFlat(flat(d), d, nlist, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed % (2**31 - 1))
    index.train(x)
    index.nprobe = min(nprobe, nlist)
    return index, f"ivf (nlist={nlist}, nprobe={index.nprobe}; {n} > probe.exact_max={exact_max})"


def knn_votes(similarity: np.ndarray | None, neighbour_labels: np.ndarray, num_classes: int, temperature: float) -> np.ndarray:
    """``(Q, num_classes)`` float64 votes, each neighbour voting ``exp(cos / temperature)`` for its label.

    Args:
        similarity: ``(Q, k)`` cosine similarity of each query to its neighbours; None: one vote each.
        neighbour_labels: ``(Q, k)`` labels; negative entries (no neighbour) do not vote.
    """
    q, k = neighbour_labels.shape
    if similarity is None:
        weight = np.ones((q, k))
    else:  # shifted by the maximum cos, 1: no overflow
        weight = np.exp((similarity.astype(np.float64) - 1.0) / temperature)
    weight = np.where(neighbour_labels >= 0, weight, 0.0)
    slot = np.arange(q)[:, None] * num_classes + np.clip(neighbour_labels, 0, None)
    return np.bincount(slot.ravel(), weights=weight.ravel(), minlength=q * num_classes).reshape(q, num_classes)


def knn_vote(similarity: np.ndarray, neighbour_labels: np.ndarray, num_classes: int, temperature: float) -> np.ndarray:
    """Class with the largest vote of :func:`knn_votes`: ``(Q,)`` int64 predictions; ties go to the lower class id."""
    return knn_votes(similarity, neighbour_labels, num_classes, temperature).argmax(1).astype(np.int64)


def image_folds(images: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of every item: its image's position in a seeded permutation of the images, modulo ``folds`` (>= 2, as
    :class:`ProbeConfig` checks)."""
    ids, inverse = np.unique(images, return_inverse=True)
    if ids.size < 2:
        raise DatasetError(f"the kNN probe needs pixels of at least 2 images, got {ids.size}; add images to the probe set.")
    fold_of_image = np.random.default_rng([seed, 0xF01D]).permutation(ids.size) % min(folds, ids.size)
    return fold_of_image[inverse]


def knn_label_transfer(features: np.ndarray, labels: np.ndarray, images: np.ndarray, *, num_classes: int,
                       settings: ProbeConfig, seed: int = 0, use_gpu: bool = False) -> tuple[np.ndarray, str]:
    """Label of every pixel from its ``settings.k`` most similar pixels of *other* images.

    The images are split into ``settings.folds`` seeded folds; the pixels of each fold query an index
    of the pixels of all other folds, so no pixel is labelled from its own image. The index is exact
    up to ``settings.exact_max`` pixels and an inverted-file index above (see :func:`knn_index`);
    neighbours vote with ``exp(cos / settings.temperature)``.

    Args:
        features: ``(N, D)``; labels ``(N,)`` class ids; images ``(N,)`` image index of each pixel.
    Returns:
        ``(N,)`` int64 predicted labels, and the description of the index used.
    """
    x = l2_normalise(features)
    k, fold = settings.k, image_folds(images, settings.folds, seed)
    pred = np.empty(labels.shape[0], np.int64)
    empty, description = knn_index(x, exact_max=settings.exact_max, nprobe=settings.nprobe, seed=seed)
    for f in np.unique(fold):
        query, bank = fold == f, fold != f
        index = faiss.clone_index(empty)
        if use_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(x[bank])
        sim, idx = index.search(x[query], min(k, int(bank.sum())))
        neighbour = np.where(idx >= 0, labels[bank][np.clip(idx, 0, None)], -1)
        pred[query] = knn_vote(sim, neighbour, num_classes, settings.temperature)
    return pred, description


def kmeans_clusters(
    features: np.ndarray,
    clusters: int,
    *,
    iters: int = 25,
    seed: int = 0,
    spherical: bool = True,
    use_gpu: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means of every row of ``features``, with no subsampling by faiss.

    Args:
        features: ``(N, D)``; L2-normalised first when ``spherical`` (cosine k-means).
        clusters: K.
    Returns:
        cluster of every row ``(N,)`` int64 and centroids ``(K, D)`` float32.
    """
    x = l2_normalise(features) if spherical else np.ascontiguousarray(features, dtype=np.float32)
    n, d = x.shape
    if clusters < 1 or n < clusters:
        raise ConfigError(f"k-means with K={clusters} needs at least K points, got {n}; lower the number of clusters "
                         "or select more pixels per image.")
    options = dict(niter=iters, seed=int(seed % (2**31 - 1)), spherical=spherical, max_points_per_centroid=n,
                   min_points_per_centroid=1, verbose=False, gpu=use_gpu)
    if hasattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS"):
        options["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    else:  # older faiss: random initialisation, best of a few restarts
        options["nredo"] = 3
    km = faiss.Kmeans(d, clusters, **options)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign[:, 0].astype(np.int64), np.asarray(km.centroids, np.float32)
