"""Clustering: the segmentations a study searches, how they are judged without labels, how stable they are.

A ``Segmenter`` is one searched configuration made fit/predict: the shared encoding (scaled numerics,
one-hot categoricals), one family (k-means, Gaussian mixture, Ward, HDBSCAN) fitted on at most
``max_fit_rows`` seeded rows, and an assignment for any row, new ones included: the family's own where it
has one (k-means, mixture), the nearest centroid (Ward) or the nearest fitted row's cluster (HDBSCAN,
whose noise, ``NOISE``, stays noise). Clusters are numbered by size, largest first, so the same
segmentation gives the same numbers.

Scores need no labels: the silhouette (on a seeded sample; a noise row counts 0, neither well nor badly
placed, so calling rows noise cannot raise it), Davies-Bouldin and Calinski-Harabasz (on the clustered
rows). Stability is the adjusted Rand index between the segmentation and refits on seeded bootstrap
resamples, compared on the same rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NOISE = -1  # a density-based family's label for a row in no cluster
FAMILIES = ("kmeans", "gmm", "ward", "hdbscan")
# the primary metric (data.metric) and whether a study maximises it
METRICS: dict[str, bool] = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}
SILHOUETTE_ROWS = 4_000  # the silhouette's pairwise distances grow with the square of the rows scored
MINIBATCH_ABOVE_ROWS = 20_000  # k-means runs as MiniBatchKMeans from this many fitted rows on
FIT_ROWS = {"ward": 5_000, "hdbscan": 20_000}  # Ward's memory grows with the square of its rows


def encoder(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Numerics imputed (median) and standardised; categoricals one-hot (a missing value is a category
    of its own, an unseen one all zeros). Two rows that differ in one categorical column are sqrt(2)
    apart, what two rows typically are along one standardised numeric column: no column type dominates."""
    parts = []
    if numeric:
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        parts.append(
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            )
        )
    if not parts:
        raise ValueError("clustering needs at least one numeric or categorical column")
    return ColumnTransformer(parts, sparse_threshold=0.0)


def as_text(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categoricals as text (None where missing), so that 1 and '1' are one category."""
    out = frame.copy()
    for column in categorical:
        values = out[column]
        out[column] = values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))
    return out


class Segmenter(BaseEstimator):
    """One clustering configuration: ``family`` with ``params`` (conf/model/<family>.yaml's fixed and
    searched values), over ``numeric`` and ``categorical`` columns, seeded by ``seed``."""

    def __init__(self, family: str, params: dict[str, Any], numeric: list[str], categorical: list[str], seed: int = 0):
        self.family = family
        self.params = params
        self.numeric = numeric
        self.categorical = categorical
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: Any = None) -> Segmenter:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown clustering family '{self.family}'; choose one of {FAMILIES}")
        rng = np.random.default_rng(self.seed)
        self.encoder_ = encoder(self.numeric, self.categorical).fit(as_text(X, self.categorical))
        embedded = self.embed(X)
        limit = FIT_ROWS.get(self.family)
        fit_rows = np.sort(rng.choice(len(X), limit, replace=False)) if limit and len(X) > limit else None
        fitted = embedded if fit_rows is None else embedded[fit_rows]
        labels = self._fit_family(fitted)
        # number clusters by size, largest first (ties: by the first row in each), noise kept as NOISE
        found = [label for label in np.unique(labels) if label != NOISE]
        order = sorted(found, key=lambda c: (-(labels == c).sum(), np.flatnonzero(labels == c)[0]))
        self.renumber_ = {int(old): new for new, old in enumerate(order)}
        self.n_clusters_ = len(order)
        self.fit_labels_ = self._renumbered(labels)
        if self.family == "ward":
            self.centroids_ = np.vstack([fitted[self.fit_labels_ == c].mean(axis=0) for c in range(self.n_clusters_)])
        if self.family == "hdbscan":
            from sklearn.neighbors import NearestNeighbors

            self.fitted_rows_ = NearestNeighbors(n_neighbors=1).fit(fitted)
        return self

    def _fit_family(self, embedded: np.ndarray) -> np.ndarray:
        params = dict(self.params)
        if self.family == "kmeans":
            from sklearn.cluster import KMeans, MiniBatchKMeans

            kind = MiniBatchKMeans if len(embedded) >= MINIBATCH_ABOVE_ROWS else KMeans
            self.model_ = kind(random_state=self.seed, **params).fit(embedded)
            return self.model_.labels_
        if self.family == "gmm":
            from sklearn.mixture import GaussianMixture

            self.model_ = GaussianMixture(random_state=self.seed, **params).fit(embedded)
            return self.model_.predict(embedded)
        if self.family == "ward":
            from sklearn.cluster import AgglomerativeClustering

            return AgglomerativeClustering(linkage="ward", **params).fit_predict(embedded)
        from sklearn.cluster import HDBSCAN

        share = params.pop("min_cluster_share", None)
        if share is not None:
            params["min_cluster_size"] = min(len(embedded), max(5, round(share * len(embedded))))
        self.model_ = HDBSCAN(copy=True, **params).fit(embedded)
        self.fit_membership_ = self.model_.probabilities_
        return self.model_.labels_

    def _renumbered(self, labels: np.ndarray) -> np.ndarray:
        return np.array([self.renumber_.get(int(label), NOISE) for label in labels], dtype=np.int64)

    def embed(self, X: pd.DataFrame) -> np.ndarray:
        """The rows as the families see them (the fitted encoding)."""
        return np.asarray(self.encoder_.transform(as_text(X, self.categorical)), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.assign(X)[0]

    def assign(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(cluster, membership) per row. Membership: the mixture's probability of the cluster, HDBSCAN's
        membership strength of the nearest fitted row (0 for noise), or minus the distance to the
        cluster's centre (k-means, Ward): larger always means more firmly in the cluster."""
        embedded = self.embed(X)
        if self.family == "kmeans":
            labels = self.model_.predict(embedded)
            distance = np.linalg.norm(embedded - self.model_.cluster_centers_[labels], axis=1)
            return self._renumbered(labels), -distance
        if self.family == "gmm":
            probability = self.model_.predict_proba(embedded)
            return self._renumbered(probability.argmax(axis=1)), probability.max(axis=1)
        if self.family == "ward":
            distances = np.linalg.norm(embedded[:, None, :] - self.centroids_[None, :, :], axis=2)
            labels = distances.argmin(axis=1)
            return labels.astype(np.int64), -distances[np.arange(len(labels)), labels]
        nearest = self.fitted_rows_.kneighbors(embedded, return_distance=False)[:, 0]
        return self.fit_labels_[nearest], np.asarray(self.fit_membership_)[nearest]

    @property
    def membership_name(self) -> str:
        """What ``assign``'s membership column is called in served and evaluated frames."""
        return {"gmm": "probability", "hdbscan": "membership"}.get(self.family, "negative_distance")


class GuardedSegmenter(BaseEstimator):
    """What a clustering task serves: ``guard`` (the contract applied to every input frame, like the
    supervised models' first step) before a ``Segmenter``; ``assign`` answers (cluster, membership)."""

    def __init__(self, guard: Any, segmenter: Segmenter):
        self.guard = guard
        self.segmenter = segmenter

    def fit(self, X: pd.DataFrame, y: Any = None) -> GuardedSegmenter:
        self.segmenter.fit(self.guard.fit(X).transform(X))
        return self

    def assign(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.segmenter.assign(self.guard.transform(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.assign(X)[0]

    def embed(self, X: pd.DataFrame) -> np.ndarray:
        return self.segmenter.embed(self.guard.transform(X))


@dataclass(frozen=True)
class ClusterScores:
    """A segmentation judged without labels. A score is None where it is undefined (fewer than two clusters)."""

    silhouette: float | None
    davies_bouldin: float | None
    calinski_harabasz: float | None
    n_clusters: int
    noise_share: float
    smallest_share: float  # the smallest cluster's share of all rows (0 with no cluster)

    def as_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)

    def metric(self, name: str) -> float | None:
        if name not in METRICS:
            raise ValueError(f"data.metric '{name}' is not a clustering metric; choose one of {tuple(METRICS)}")
        return getattr(self, name)


def scores(
    embedded: np.ndarray, labels: np.ndarray, *, seed: int, silhouette_rows: int = SILHOUETTE_ROWS
) -> ClusterScores:
    """``labels`` of ``embedded`` rows judged: the silhouette on a seeded sample of ``silhouette_rows``
    rows (noise rows count 0), Davies-Bouldin and Calinski-Harabasz on the clustered rows."""
    labels = np.asarray(labels)
    clustered = labels != NOISE
    found, counts = np.unique(labels[clustered], return_counts=True)
    rows = len(labels)
    noise_share = float(1 - clustered.mean()) if rows else 0.0
    smallest = float(counts.min() / rows) if len(found) else 0.0
    if len(found) < 2:
        return ClusterScores(None, None, None, len(found), noise_share, smallest)
    return ClusterScores(
        silhouette=score_of("silhouette", embedded, labels, seed=seed, silhouette_rows=silhouette_rows),
        davies_bouldin=score_of("davies_bouldin", embedded, labels, seed=seed),
        calinski_harabasz=score_of("calinski_harabasz", embedded, labels, seed=seed),
        n_clusters=len(found),
        noise_share=noise_share,
        smallest_share=smallest,
    )


def score_of(
    name: str, embedded: np.ndarray, labels: np.ndarray, *, seed: int, silhouette_rows: int = SILHOUETTE_ROWS
) -> float | None:
    """One score of ``scores`` alone (None with fewer than two clusters): the silhouette on a seeded
    sample with noise counting 0; Davies-Bouldin or Calinski-Harabasz on the clustered rows."""
    from sklearn import metrics as skm

    labels = np.asarray(labels)
    clustered = labels != NOISE
    if len(np.unique(labels[clustered])) < 2:
        return None
    if name == "silhouette":
        return float(row_silhouettes(embedded, labels, seed=seed, silhouette_rows=silhouette_rows).mean())
    index = {"davies_bouldin": skm.davies_bouldin_score, "calinski_harabasz": skm.calinski_harabasz_score}[name]
    return float(index(embedded[clustered], labels[clustered]))


def silhouette_sample(rows: int, seed: int, silhouette_rows: int = SILHOUETTE_ROWS) -> np.ndarray:
    """The rows a silhouette is computed on: all, or a seeded sample of ``silhouette_rows``."""
    if rows <= silhouette_rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, silhouette_rows, replace=False))


def row_silhouettes(
    embedded: np.ndarray, labels: np.ndarray, *, seed: int, silhouette_rows: int = SILHOUETTE_ROWS
) -> np.ndarray:
    """Each sampled row's silhouette (``silhouette_sample``), a noise row's 0; their mean is the
    segmentation's silhouette, and a paired bootstrap of two segmentations resamples these rows."""
    from sklearn import metrics as skm

    labels = np.asarray(labels)
    sample = silhouette_sample(len(labels), seed, silhouette_rows)
    values = np.zeros(len(sample))
    clustered = labels[sample] != NOISE
    kept = sample[clustered]
    if len(np.unique(labels[kept])) >= 2:
        values[clustered] = skm.silhouette_samples(embedded[kept], labels[kept])
    return values


def consensus(judged: list[ClusterScores]) -> int:
    """The index of the segmentation the three scores agree on best: the lowest sum of its ranks by
    silhouette, Davies-Bouldin and Calinski-Harabasz among ``judged`` (ties: the higher silhouette).
    Each score has its own bias (the silhouette favours few clusters, Calinski-Harabasz many); a vote
    of several indices is the usual remedy (NbClust's majority rule). Undefined scores rank last."""
    if not judged:
        raise ValueError("consensus needs at least one scored segmentation")
    ranks = np.zeros(len(judged))
    for name, maximize in METRICS.items():
        values = np.array([np.nan if s.metric(name) is None else s.metric(name) for s in judged], dtype=float)
        ranks += pd.Series(-values if maximize else values).rank(method="average", na_option="bottom").to_numpy()
    silhouettes = np.array([-np.inf if s.silhouette is None else s.silhouette for s in judged])
    return int(np.lexsort((-silhouettes, ranks))[0])


@dataclass(frozen=True)
class Stability:
    """Adjusted Rand index between a segmentation and its refits on bootstrap resamples (1: the same
    partition every time; about 0: no more alike than chance)."""

    mean: float
    std: float
    min: float
    resamples: int
    values: tuple[float, ...]


def stability(
    refit: Callable[[pd.DataFrame, int], Segmenter],
    frame: pd.DataFrame,
    labels: np.ndarray,
    *,
    resamples: int,
    seed: int,
) -> Stability:
    """``refit(rows, seed)`` on ``resamples`` seeded bootstrap resamples of ``frame``; each refit assigns
    every row of ``frame`` and is compared with ``labels`` (the segmentation's own) on them. Noise is a
    label of its own here: a refit that calls other rows noise agrees less."""
    from sklearn.metrics import adjusted_rand_score

    if resamples < 2:
        raise ValueError(f"stability needs at least 2 resamples, got {resamples}")
    rng = np.random.default_rng(seed)
    values = []
    for b in range(resamples):
        rows = rng.choice(len(frame), len(frame), replace=True)
        refitted = refit(frame.iloc[rows].reset_index(drop=True), seed + 1 + b)
        values.append(float(adjusted_rand_score(labels, refitted.predict(frame))))
    spread = np.asarray(values)
    return Stability(float(spread.mean()), float(spread.std()), float(spread.min()), resamples, tuple(values))


PROFILE_TOP = 3  # categories listed per categorical column in a cluster's profile
PLOT_ROWS = 2_000  # rows drawn in the projection and silhouette plots (seeded sample)


def profile(frame: pd.DataFrame, labels: np.ndarray, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """What each cluster holds, one row per cluster (largest first, then noise, then all rows for
    comparison): its rows and share, each numeric column's mean, each categorical column's most
    common values with their shares within the cluster."""
    labels = np.asarray(labels)
    groups = [(str(c), labels == c) for c in sorted(set(labels.tolist()) - {NOISE})]
    if (labels == NOISE).any():
        groups.append(("noise", labels == NOISE))
    groups.append(("all", np.ones(len(labels), dtype=bool)))
    rows = []
    for name, member in groups:
        part = frame.loc[member]
        row: dict[str, Any] = {"cluster": name, "rows": int(member.sum()), "share": float(member.mean())}
        row |= {f"mean_{c}": float(part[c].mean()) for c in numeric}
        for column in categorical:
            shares = part[column].astype(object).fillna("(missing)").value_counts(normalize=True).head(PROFILE_TOP)
            row[f"top_{column}"] = ", ".join(f"{value} {share:.0%}" for value, share in shares.items())
        rows.append(row)
    return pd.DataFrame(rows)


def projection(embedded: np.ndarray, labels: np.ndarray, seed: int) -> pd.DataFrame:
    """The rows on the first two principal components of the encoding the families see, with their
    cluster: how far apart the clusters lie, as far as two dimensions can show."""
    from sklearn.decomposition import PCA

    sample = silhouette_sample(len(embedded), seed, PLOT_ROWS)
    points = PCA(n_components=min(2, embedded.shape[1]), random_state=seed).fit_transform(embedded[sample])
    y = points[:, 1] if points.shape[1] > 1 else np.zeros(len(points))
    return pd.DataFrame({"pc1": points[:, 0], "pc2": y, "cluster": np.asarray(labels)[sample]})


def silhouette_table(embedded: np.ndarray, labels: np.ndarray, seed: int) -> pd.DataFrame:
    """Each sampled clustered row's silhouette, sorted within its cluster (the silhouette plot): a
    cluster whose rows mostly score below 0 sits closer to another cluster than to itself."""
    from sklearn.metrics import silhouette_samples

    sample = silhouette_sample(len(embedded), seed, PLOT_ROWS)
    kept = sample[np.asarray(labels)[sample] != NOISE]
    clusters = np.asarray(labels)[kept]
    if len(np.unique(clusters)) < 2:
        return pd.DataFrame({"row": [], "cluster": [], "silhouette": []})
    values = silhouette_samples(embedded[kept], clusters)
    table = pd.DataFrame({"cluster": clusters, "silhouette": values})
    table = table.sort_values(["cluster", "silhouette"], ascending=[True, False], kind="stable")
    table.insert(0, "row", np.arange(len(table)))
    return table.reset_index(drop=True)
