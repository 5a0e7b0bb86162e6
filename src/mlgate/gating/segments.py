"""What the gate judges of a segmentation (a clustering task), computed from the test rows and the two
models' clusters: both scored in the same space, with paired-bootstrap intervals, and how far they
agree. Pure: no tracking, no files.

Both segmentations are scored in the candidate's encoding of the test rows, so the comparison is of
the partitions alone, not of two encodings (each model scales the columns by its own training rows).
The silhouette's bootstrap resamples the per-row silhouettes of a seeded sample (their mean is the
score); Davies-Bouldin and Calinski-Harabasz are recomputed on each resample of the rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlgate.files import content_hash
from mlgate.gating.evidence import Comparison
from mlgate.modelling import clustering, metrics


def _scores(embedded: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    return {k: float(v) for k, v in clustering.scores(embedded, labels, seed=seed).as_dict().items() if v is not None}


def _draws(metric: str, embedded: np.ndarray, segmentations: list[np.ndarray], resamples: int, seed: int) -> np.ndarray:
    """Each segmentation's ``metric`` on the same resampled rows: one row per resample."""
    if metric == "silhouette":
        per_row = np.column_stack([clustering.row_silhouettes(embedded, s, seed=seed) for s in segmentations])
        rows = np.random.default_rng(seed).integers(0, len(per_row), (resamples, len(per_row)))
        return per_row[rows].mean(axis=1)
    return metrics.bootstrap_scores(metric, embedded, *segmentations, resamples=resamples, seed=seed)


def compare(
    metric: str,
    rows: pd.DataFrame,
    embedded: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray | None,
    *,
    skipped: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[Comparison, float | None]:
    """(the comparison on ``rows``, the adjusted Rand index of the two segmentations or None without a
    champion): every score of each, the 95% bootstrap interval of ``metric`` for each and of the gain."""
    from sklearn.metrics import adjusted_rand_score

    segmentations = [candidate] if champion is None else [candidate, champion]
    draws = _draws(metric, embedded, segmentations, resamples, seed)
    draws = draws[~np.isnan(draws).any(axis=1)]  # a resample with one cluster left has no score
    comparison = Comparison(
        rows=len(rows),
        content_hash=content_hash(rows),
        candidate=_scores(embedded, candidate, seed),
        champion=None if champion is None else _scores(embedded, champion, seed),
        candidate_interval=metrics.percentile_interval(draws[:, 0]) if len(draws) else None,
        champion_interval=None if champion is None or not len(draws) else metrics.percentile_interval(draws[:, 1]),
        gain_interval=(
            None
            if champion is None or not len(draws)
            else metrics.percentile_interval(metrics.improvement(metric, draws[:, 0], draws[:, 1]))
        ),
        skipped=skipped,
    )
    agreement = None if champion is None else float(adjusted_rand_score(candidate, champion))
    return comparison, agreement
