"""Binary-classification metrics for the annotator: ROC-AUC, precision, recall, F1.

Kept dependency-free (no scikit-learn): ROC-AUC is the Mann-Whitney U
statistic, i.e. the probability that a random positive outscores a random
negative, with ties counted as one half.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve; needs at least one positive and one negative."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC-AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    # Average ranks (1-based) so that tied scores share their rank.
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def roc_points(pos: list[float], neg: list[float], max_points: int = 101) -> dict[str, list[float]]:
    """The ROC curve (false and true positive rates, one point per distinct score, thinned to at most
    ``max_points``): the curve the report draws per benchmark."""
    s = np.asarray(list(pos) + list(neg), dtype=np.float64)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last document of each distinct score
    tpr = np.r_[0.0, np.cumsum(y)[last] / max(1, len(pos))]
    fpr = np.r_[0.0, np.cumsum(1 - y)[last] / max(1, len(neg))]
    idx = np.unique(np.linspace(0, len(tpr) - 1, min(max_points, len(tpr))).round().astype(int))
    return {"fpr": [round(float(x), 4) for x in fpr[idx]], "tpr": [round(float(x), 4) for x in tpr[idx]]}


@dataclass
class BinaryMetrics:
    precision: float
    recall: float
    f1: float
    roc_auc: float
    accuracy: float
    n: int
    threshold: float

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"P={self.precision:.4f} R={self.recall:.4f} F1={self.f1:.4f} "
                f"ROC-AUC={self.roc_auc:.4f} acc={self.accuracy:.4f} (n={self.n})")


def binary_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5) -> BinaryMetrics:
    """Precision/recall/F1 of ``score >= threshold`` as positive, plus ROC-AUC."""
    y = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(scores, dtype=np.float64) >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(
        precision=precision,
        recall=recall,
        f1=f1,
        roc_auc=roc_auc(y, scores),
        accuracy=float((pred == (y == 1)).mean()),
        n=len(y),
        threshold=threshold,
    )
