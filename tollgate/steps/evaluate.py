"""Evaluate: test-set metrics of the selected candidate and of the current champion.

Both are scored by running their ONNX graphs (the bytes that are served) through
onnxruntime (:class:`tollgate.serving.runtime.OnnxModel`); nothing here unpickles. Any
object with ``predict_proba(frame)`` works, which is what the tests use to compare with
the scikit-learn Pipeline.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from threadpoolctl import threadpool_limits

from tollgate.records import CandidateEvaluation, ChampionEvaluation, Evaluation, FeatureSpec, Selection
from tollgate.steps.labels import DEFAULT_DECISION_THRESHOLD, decision_threshold, positive_decisions
from tollgate.steps.preprocess import LABEL

if TYPE_CHECKING:
    from tollgate.registry import Registry
    from tollgate.settings import EvaluateSettings

# sklearn.calibration, sklearn.inspection, fairlearn (tollgate.steps.fairness) and scipy.spatial
# (tollgate.steps.drift) are imported by the functions that use them: every train task imports
# this module for its metrics, and those imports would add about a second to each.

# Bins of the predicted-probability profile recorded on the test split (as data validation bins features).
PREDICTION_BINS = 10

# Permutation importance re-scores the test rows once per feature and repeat; these keep it
# to a few seconds on the default data while ranking the top features stably.
TOP_FEATURES = 10
IMPORTANCE_REPEATS = 3
IMPORTANCE_MAX_ROWS = 2000


def classification_metrics(y_true: np.ndarray, positive_proba: np.ndarray,
                           threshold: float = DEFAULT_DECISION_THRESHOLD,
                           decisions: np.ndarray | None = None) -> dict[str, float]:
    """ROC AUC, PR AUC, accuracy, precision, recall, F1, log loss and Brier score (``METRIC_NAMES``).

    Accuracy, precision, recall and F1 count a row as positive when its probability is
    ``>= threshold`` (the model's ``decision_threshold``, the rule the server answers with),
    or, given ``decisions`` (0/1 per row, e.g. the classes a server answered), those.
    """
    y_true = np.asarray(y_true).astype(int)
    proba = np.clip(np.asarray(positive_proba, dtype=float), 0.0, 1.0)
    predicted = (positive_decisions(proba, threshold) if decisions is None else np.asarray(decisions)).astype(int)
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


def _normalised(proba: np.ndarray) -> np.ndarray:
    """float64 rows that sum to 1 (the float32 graph's rows sum to 1 within ~1e-7)."""
    proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    return proba / np.maximum(proba.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)


def one_vs_rest_auc(y_true: np.ndarray, proba: np.ndarray) -> list[float | None]:
    """ROC AUC of each class against the rest (None for a class absent from, or the only one in, ``y_true``)."""
    y_true = np.asarray(y_true).astype(int)
    result = []
    for index in range(proba.shape[1]):
        positive = y_true == index
        result.append(float(roc_auc_score(positive, proba[:, index])) if 0 < positive.sum() < len(y_true) else None)
    return result


def multiclass_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Macro/weighted one-vs-rest ROC AUC, macro/weighted F1, accuracy, macro precision/recall and log loss
    (``MULTICLASS_METRIC_NAMES``, in that order).

    ``y_true`` holds class positions (0..k-1) and ``proba`` is ``[n, k]`` in the same class
    order; the predicted class is the argmax (ties to the first class, like the server).
    The one-vs-rest AUCs average over the classes present in ``y_true`` (scikit-learn's
    ``multi_class="ovr"`` definition); weighted by each class's support.
    """
    y_true = np.asarray(y_true).astype(int)
    proba = _normalised(proba)
    k = proba.shape[1]
    labels = list(range(k))
    predicted = proba.argmax(axis=1)
    aucs = one_vs_rest_auc(y_true, proba)
    support = np.bincount(y_true, minlength=k).astype(float)
    measured = [i for i in labels if aucs[i] is not None]
    macro_auc = float(np.mean([aucs[i] for i in measured])) if measured else math.nan
    weighted_auc = (float(np.average([aucs[i] for i in measured], weights=support[measured]))
                    if measured else math.nan)
    return {
        "roc_auc_ovr_macro": macro_auc,
        "roc_auc_ovr_weighted": weighted_auc,
        "f1_macro": float(f1_score(y_true, predicted, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, predicted, labels=labels, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision_macro": float(precision_score(y_true, predicted, labels=labels, average="macro", zero_division=0)),
        "recall_macro": float(recall_score(y_true, predicted, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, proba, labels=labels)),
    }


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[Any]) -> list[dict[str, Any]]:
    """One row per class, in class order: precision, recall, F1, support and one-vs-rest ROC AUC."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(classes)))
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, predicted, labels=labels,
                                                                     zero_division=0)
    aucs = one_vs_rest_auc(y_true, proba)
    return [{"class": classes[i], "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "support": int(support[i]), "roc_auc_ovr": aucs[i]} for i in labels]


def multiclass_curves(y_true: np.ndarray, proba: np.ndarray, classes: list[Any],
                      max_points: int = 200) -> dict[str, Any]:
    """The k x k confusion matrix (rows actual, columns predicted, class order) and one-vs-rest
    precision-recall curves per class, down-sampled like the binary curves."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(classes)))
    curves_by_class = []
    for index in labels:
        positive = y_true == index
        if not positive.any():
            curves_by_class.append({"class": classes[index], "precision": [], "recall": []})
            continue
        precision, recall, _ = precision_recall_curve(positive, proba[:, index])
        if len(precision) > max_points:
            keep = np.unique(np.linspace(0, len(precision) - 1, max_points).round().astype(int))
            precision, recall = precision[keep], recall[keep]
        curves_by_class.append({"class": classes[index], "precision": precision.tolist(), "recall": recall.tolist(),
                                "average_precision": float(average_precision_score(positive, proba[:, index]))})
    return {"confusion_matrix": confusion_matrix(y_true, proba.argmax(axis=1), labels=labels).tolist(),
            "pr_per_class": curves_by_class}


def curves(y_true: np.ndarray, positive_proba: np.ndarray, threshold: float = DEFAULT_DECISION_THRESHOLD,
           max_points: int = 200) -> dict[str, Any]:
    """Confusion matrix (at ``threshold``) and down-sampled ROC, precision-recall and calibration
    curves (KFP's UI struggles with thousands of points)."""
    y_true = np.asarray(y_true).astype(int)
    predicted = positive_decisions(positive_proba, threshold).astype(int)
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
    from sklearn.calibration import calibration_curve

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

    def __init__(self, model=None, k: int = 2, threshold: float = DEFAULT_DECISION_THRESHOLD):
        self.model = model
        self.k = k
        self.threshold = threshold

    def fit(self, X, y=None):  # pragma: no cover - never refitted: it scores a fixed graph
        raise NotImplementedError("a served graph is not refitted")

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self) -> np.ndarray:
        return np.arange(self.k)

    def predict_proba(self, X):
        return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    def predict(self, X):
        proba = self.predict_proba(X)
        if self.k > 2:
            return proba.argmax(axis=1)
        return positive_decisions(proba[:, 1], self.threshold).astype(int)


def _macro_auc_scorer(estimator, X, y) -> float:
    """Macro one-vs-rest ROC AUC of a multiclass graph (permutation importance's score)."""
    aucs = [a for a in one_vs_rest_auc(y, estimator.predict_proba(X)) if a is not None]
    return float(np.mean(aucs)) if aucs else 0.0


def top_feature_importance(model, test: pd.DataFrame, columns: list[str], top: int = TOP_FEATURES,
                           repeats: int = IMPORTANCE_REPEATS, seed: int = 0, classes: int = 2,
                           threshold: float = DEFAULT_DECISION_THRESHOLD) -> list[dict[str, Any]]:
    """Permutation importance (drop in test ROC AUC when a column is shuffled; macro one-vs-rest
    ROC AUC for ``classes`` > 2), largest first."""
    from sklearn.inspection import permutation_importance

    sample = test.sample(n=min(len(test), IMPORTANCE_MAX_ROWS), random_state=seed) if len(test) else test
    # Many small predictions: OpenMP thread start-up and spinning (HistGradientBoosting) made
    # this 7x slower on 2 busy cores than a single thread.
    scoring = _macro_auc_scorer if classes > 2 else "roc_auc"
    with threadpool_limits(limits=1):
        result = permutation_importance(_GraphEstimator(model, classes, threshold), sample[columns], sample[LABEL].to_numpy(),
                                        scoring=scoring, n_repeats=repeats, random_state=seed)
    order = np.argsort(-result.importances_mean)[:top]
    return [{"feature": columns[i], "importance": float(result.importances_mean[i]),
             "std": float(result.importances_std[i])} for i in order]


def score(model, test: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Positive-class probabilities of ``model`` (an :class:`OnnxModel`) on ``test``, as float64."""
    return np.asarray(model.predict_proba(test[columns])[:, 1], dtype=np.float64)


def evaluate_model(model, test: pd.DataFrame, columns: list[str],
                   fairness: dict[str, Any] | None = None, classes: list[Any] | None = None,
                   threshold: float | None = None) -> dict[str, Any]:
    """Metrics, curves and top-feature importance of one model on the test split.

    ``fairness`` is the ``fairness`` config section as a dict; with sensitive attributes
    configured (and present in ``test``), the result has per-attribute group fairness.
    ``classes`` (a multiclass model's class order) switches to the multiclass metrics,
    the k x k confusion matrix, per-class curves and the per-class table.

    A binary model's decisions (thresholded metrics, confusion matrix, fairness) use
    ``threshold``, by default the ``decision_threshold`` its input schema records
    (``model.schema``, as :class:`~tollgate.serving.runtime.OnnxModel` holds it): the rule
    the server will answer with. The result records it as ``decision_threshold``.
    """
    from tollgate.steps.drift import numeric_profile
    from tollgate.steps.fairness import fairness_report

    if classes is not None:
        return _evaluate_multiclass(model, test, columns, fairness, classes)
    if threshold is None:
        threshold = decision_threshold(getattr(model, "schema", None))
    proba = score(model, test, columns)
    y_true = test[LABEL].to_numpy()
    result = {"metrics": classification_metrics(y_true, proba, threshold), **curves(y_true, proba, threshold),
              "decision_threshold": threshold, "rows": int(len(test)),
              # The reference `tollgate monitor` compares live predicted probabilities with.
              "prediction_profile": numeric_profile(pd.Series(proba), PREDICTION_BINS),
              "importance": top_feature_importance(model, test, columns, threshold=threshold)}
    if fairness and fairness.get("sensitive_attributes"):
        result["fairness"] = fairness_report(test, y_true, proba, fairness["sensitive_attributes"],
                                             threshold, fairness.get("min_group_size", 30),
                                             fairness.get("min_group_positives", 20))
    return result


def _evaluate_multiclass(model, test: pd.DataFrame, columns: list[str], fairness: dict[str, Any] | None,
                         classes: list[Any]) -> dict[str, Any]:
    from tollgate.steps.fairness import multiclass_fairness_report

    proba = np.asarray(model.predict_proba(test[columns]), dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(f"the graph answers {proba.shape[1] if proba.ndim == 2 else '?'} probability columns "
                         f"for {len(classes)} classes")
    y_true = test[LABEL].to_numpy()
    result = {"task": "multiclass", "classes": list(classes), "metrics": multiclass_metrics(y_true, proba),
              "per_class": per_class_metrics(y_true, proba, classes), **multiclass_curves(y_true, proba, classes),
              "rows": int(len(test)),
              "importance": top_feature_importance(model, test, columns, classes=len(classes))}
    if fairness and fairness.get("sensitive_attributes"):
        result["fairness"], skipped = multiclass_fairness_report(
            test, y_true, proba.argmax(axis=1), fairness["sensitive_attributes"], classes,
            fairness.get("classes") or [], fairness.get("min_group_size", 30), fairness.get("min_group_positives", 20))
        if skipped:
            result["fairness_skipped"] = skipped
    return result


def champion_classes(champion_schema: dict[str, Any]) -> list[Any] | None:
    """A champion's class order from its input schema (None: a binary model)."""
    return champion_schema.get("classes") if champion_schema.get("task") == "multiclass" else None


def evaluate_champion(champion_model, champion_schema: dict[str, Any], test: pd.DataFrame,
                      classes: list[Any] | None = None) -> dict[str, Any]:
    """Score the champion on the same test rows, with the columns *it* was trained on.

    Returns ``{"metrics": ...}`` or ``{"error": reason}`` when the champion cannot read
    this data (for example a column it needs is gone), or is not the same kind of model
    as the candidate (binary vs multiclass, or other classes; ``classes`` is the
    candidate's class order, None for binary): change thresholds compare like with like,
    so the gate then refuses to compare.
    """
    columns = [c["name"] for c in champion_schema.get("columns", [])]
    missing = [c for c in columns if c not in test.columns]
    if missing:
        return {"error": f"the champion needs columns this data does not have: {missing}; put them back in the "
                         f"data to compare (this run may still leave them out of its own features with data.drop)"}
    theirs = champion_classes(champion_schema)
    if (theirs is None) != (classes is None):
        kinds = ("multiclass" if theirs is not None else "binary", "multiclass" if classes is not None else "binary")
        return {"error": f"the champion is a {kinds[0]} model and the candidate a {kinds[1]} one: their metrics "
                         "are not comparable; promote the candidate deliberately (tollgate models promote) if the "
                         "task really changed"}
    if classes is not None and theirs is not None:
        if [str(c) for c in theirs] != [str(c) for c in classes]:
            return {"error": f"the champion predicts classes {theirs} and the candidate {list(classes)}: their "
                             "metrics are not comparable; promote the candidate deliberately (tollgate models "
                             "promote) if the classes really changed"}
        try:
            proba = np.asarray(champion_model.predict_proba(test[columns]), dtype=np.float64)
        except Exception as exc:  # an unloadable or incompatible champion must not crash the run
            return {"error": f"the champion could not score the test set: {type(exc).__name__}: {exc}"}
        metrics = multiclass_metrics(test[LABEL].to_numpy(), proba)
        if any(math.isnan(v) for v in metrics.values()):
            return {"error": "the champion produced NaN metrics on the test set"}
        return {"metrics": metrics}
    try:
        proba = score(champion_model, test, columns)
    except Exception as exc:  # an unloadable or incompatible champion must not crash the run
        return {"error": f"the champion could not score the test set: {type(exc).__name__}: {exc}"}
    # The champion decides as it serves: with the threshold its own input schema records.
    threshold = decision_threshold(champion_schema)
    metrics = classification_metrics(test[LABEL].to_numpy(), proba, threshold)
    if any(math.isnan(v) for v in metrics.values()):
        return {"error": "the champion produced NaN metrics on the test set"}
    return {"metrics": metrics, "decision_threshold": threshold}


def score_champion(registry: Registry, model_name: str, test: pd.DataFrame,
                   classes: list[Any] | None = None) -> ChampionEvaluation | None:
    """The production champion on ``test``, by running its registered ONNX graph (None: no champion).

    The champion's files are downloaded through their digests first: a file that fails its
    sha256 stops the run here, before anything is parsed. A champion whose graph is missing
    or does not load stops the run with the commands that get past it; one that loads but
    cannot score these rows (a column it needs is gone, another task) is recorded with the
    reason, and the gate refuses to compare.
    """
    import json
    import os
    import tempfile

    from tollgate.registry import ONNX_FILE, SCHEMA_FILE
    from tollgate.serving.runtime import OnnxModel

    production = registry.champion(model_name)
    if production is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        registry.download_champion(model_name, tmp, production.version)
        with open(os.path.join(tmp, SCHEMA_FILE)) as handle:
            schema = json.load(handle)
        try:
            model = OnnxModel.from_file(os.path.join(tmp, ONNX_FILE), schema)
        except FileNotFoundError:  # no run can compare against it: say how to get past it
            raise registry.unreadable_champion(
                model_name, production.version,
                f"it has no {ONNX_FILE} (registered before the ONNX contract), so the gate cannot score "
                "what it serves") from None
        except Exception as exc:
            raise registry.unreadable_champion(model_name, production.version,
                                               f"{ONNX_FILE} does not load: {type(exc).__name__}: {exc}") from exc
        outcome = evaluate_champion(model, schema, test, classes=classes)
    known = {f.name for f in fields(ChampionEvaluation)} - {"version"}
    return ChampionEvaluation(version=production.version, **{k: v for k, v in outcome.items() if k in known})


def run_evaluate(candidate_dir: str | Path, selection: Selection, spec: FeatureSpec, test: pd.DataFrame,
                 settings: EvaluateSettings, registry: Registry, model_name: str) -> Evaluation:
    """Evaluate as the DAG runs it: the selected candidate's ``model.onnx`` in ``candidate_dir``
    and the production champion, on the same test rows."""
    from tollgate.registry import ONNX_FILE
    from tollgate.serving.runtime import OnnxModel

    classes = spec.classes if spec.multiclass else None
    model = OnnxModel.from_file(os.fspath(Path(candidate_dir) / ONNX_FILE), spec.schema)
    scored = evaluate_model(model, test, spec.columns, fairness=settings.fairness.model_dump(), classes=classes)
    winner = selection.winner
    known = {f.name for f in fields(CandidateEvaluation)}
    candidate = CandidateEvaluation(
        candidate_id=winner.candidate_id, family=winner.family, params=winner.params,
        validation_metrics=winner.validation_metrics, selection_metric=selection.selection_metric,
        fit_seconds=winner.fit_seconds, onnx_export=winner.onnx_export, task=spec.task,
        **{k: v for k, v in scored.items() if k in known and k != "task"},
        extra={k: v for k, v in scored.items() if k not in known})
    return Evaluation(candidate=candidate, champion=score_champion(registry, model_name, test, classes))


def kfp_metrics(candidate: CandidateEvaluation) -> tuple[dict[str, float], tuple[list[str], list[list[int]]],
                                                          tuple[list[float], list[float], list[float]] | None]:
    """What the KFP UI shows of an evaluation: scalar metrics (test metrics and the bounded fairness
    measures), the confusion matrix with its class names (the model's class order), and the ROC
    curve (binary only)."""
    scalars = dict(candidate.metrics)
    for attribute, measures in candidate.fairness_measures().items():
        scalars.update({f"{attribute}_{measure}": value for measure, value in measures.items() if value is not None})
    names = [str(c) for c in candidate.classes or []] if candidate.multiclass else ["negative", "positive"]
    roc = None
    if not candidate.multiclass and candidate.roc is not None:
        roc = (candidate.roc["fpr"], candidate.roc["tpr"], candidate.roc["thresholds"])
    return scalars, (names, candidate.confusion_matrix), roc
