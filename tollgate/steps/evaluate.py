"""Evaluate: test-set metrics of the selected candidate and of the current champion.

Both are scored by running their ONNX graphs (the bytes that are served) through
onnxruntime (:class:`tollgate.serving.runtime.OnnxModel`); nothing here unpickles. Any
object with ``predict_proba(frame)`` works, which is what the tests use to compare with
the scikit-learn Pipeline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from threadpoolctl import threadpool_limits

from tollgate.steps.drift import numeric_profile
from tollgate.steps.fairness import fairness_report
from tollgate.steps.preprocess import LABEL

# Bins of the predicted-probability profile recorded on the test split (as data validation bins features).
PREDICTION_BINS = 10

# Permutation importance re-scores the test rows once per feature and repeat; these keep it
# to a few seconds on the default data while ranking the top features stably.
TOP_FEATURES = 10
IMPORTANCE_REPEATS = 3
IMPORTANCE_MAX_ROWS = 2000


def classification_metrics(y_true: np.ndarray, positive_proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC AUC, PR AUC, accuracy, precision, recall, F1, log loss and Brier score."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.clip(np.asarray(positive_proba, dtype=float), 0.0, 1.0)
    predicted = (proba >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba)),
    }


def curves(y_true: np.ndarray, positive_proba: np.ndarray, threshold: float = 0.5,
           max_points: int = 200) -> dict[str, Any]:
    """Confusion matrix and down-sampled ROC, precision-recall and calibration curves
    (KFP's UI struggles with thousands of points)."""
    y_true = np.asarray(y_true).astype(int)
    predicted = (np.asarray(positive_proba) >= threshold).astype(int)
    fpr, tpr, thresholds = roc_curve(y_true, positive_proba)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    # roc_curve's first threshold is +inf; KFP's ClassificationMetrics wants finite numbers.
    thresholds = np.where(np.isfinite(thresholds), thresholds, 1.0)
    precision, recall, _ = precision_recall_curve(y_true, positive_proba)
    if len(precision) > max_points:
        keep = np.unique(np.linspace(0, len(precision) - 1, max_points).round().astype(int))
        precision, recall = precision[keep], recall[keep]
    # Quantile bins hold equally many rows, so sparse probability ranges do not give noisy points.
    observed, predicted_mean = calibration_curve(y_true, np.clip(positive_proba, 0, 1), n_bins=10, strategy="quantile")
    return {
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=[0, 1]).tolist(),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()},
        "pr": {"precision": precision.tolist(), "recall": recall.tolist()},
        "calibration": {"predicted": predicted_mean.tolist(), "observed": observed.tolist()},
    }


class _GraphEstimator(ClassifierMixin, BaseEstimator):
    """A fitted model seen through scikit-learn's estimator interface, for ``permutation_importance``."""

    def __init__(self, model=None):
        self.model = model

    def fit(self, X, y=None):  # pragma: no cover - never refitted: it scores a fixed graph
        raise NotImplementedError("a served graph is not refitted")

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def predict_proba(self, X):
        return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    def predict(self, X):
        proba = self.predict_proba(X)
        return (proba[:, 1] > proba[:, 0]).astype(int)


def top_feature_importance(model, test: pd.DataFrame, columns: list[str], top: int = TOP_FEATURES,
                           repeats: int = IMPORTANCE_REPEATS, seed: int = 0) -> list[dict[str, Any]]:
    """Permutation importance (drop in test ROC AUC when a column is shuffled), largest first."""
    sample = test.sample(n=min(len(test), IMPORTANCE_MAX_ROWS), random_state=seed) if len(test) else test
    # Many small predictions: OpenMP thread start-up and spinning (HistGradientBoosting) made
    # this 7x slower on 2 busy cores than a single thread.
    with threadpool_limits(limits=1):
        result = permutation_importance(_GraphEstimator(model), sample[columns], sample[LABEL].to_numpy(),
                                        scoring="roc_auc",
                                        n_repeats=repeats, random_state=seed)
    order = np.argsort(-result.importances_mean)[:top]
    return [{"feature": columns[i], "importance": float(result.importances_mean[i]),
             "std": float(result.importances_std[i])} for i in order]


def score(model, test: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Positive-class probabilities of ``model`` (an :class:`OnnxModel`) on ``test``, as float64."""
    return np.asarray(model.predict_proba(test[columns])[:, 1], dtype=np.float64)


def evaluate_model(model, test: pd.DataFrame, columns: list[str],
                   fairness: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics, curves and top-feature importance of one model on the test split.

    ``fairness`` is the ``fairness`` config section as a dict; with sensitive attributes
    configured (and present in ``test``), the result has per-attribute group fairness.
    """
    proba = score(model, test, columns)
    y_true = test[LABEL].to_numpy()
    result = {"metrics": classification_metrics(y_true, proba), **curves(y_true, proba), "rows": int(len(test)),
              # The reference `tollgate monitor` compares live predicted probabilities with.
              "prediction_profile": numeric_profile(pd.Series(proba), PREDICTION_BINS),
              "importance": top_feature_importance(model, test, columns)}
    if fairness and fairness.get("sensitive_attributes"):
        result["fairness"] = fairness_report(test, y_true, proba, fairness["sensitive_attributes"],
                                             fairness.get("threshold", 0.5), fairness.get("min_group_size", 30),
                                             fairness.get("min_group_positives", 20))
    return result


def evaluate_champion(champion_model, champion_schema: dict[str, Any], test: pd.DataFrame) -> dict[str, Any]:
    """Score the champion on the same test rows, with the columns *it* was trained on.

    Returns ``{"metrics": ...}`` or ``{"error": reason}`` when the champion cannot read
    this data (for example a column it needs is gone); the gate then refuses to compare.
    """
    columns = [c["name"] for c in champion_schema.get("columns", [])]
    missing = [c for c in columns if c not in test.columns]
    if missing:
        return {"error": f"the champion needs columns this data does not have: {missing}; put them back in the "
                         f"data to compare (this run may still leave them out of its own features with data.drop)"}
    try:
        proba = score(champion_model, test, columns)
    except Exception as exc:  # an unloadable or incompatible champion must not crash the run
        return {"error": f"the champion could not score the test set: {type(exc).__name__}: {exc}"}
    metrics = classification_metrics(test[LABEL].to_numpy(), proba)
    if any(math.isnan(v) for v in metrics.values()):
        return {"error": "the champion produced NaN metrics on the test set"}
    return {"metrics": metrics}
