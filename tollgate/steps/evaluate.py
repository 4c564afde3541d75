"""Evaluate: test-set metrics of the selected candidate and of the current champion.

Both are scored by running their ONNX graphs (the bytes that are served) through
onnxruntime (:class:`tollgate.serving.runtime.OnnxModel`); nothing here unpickles. Any
object with ``predict_proba(frame)`` works, which is what the tests use to compare with
the scikit-learn Pipeline.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
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

from tollgate.records import (
    CalibrationCurve,
    CandidateEvaluation,
    ChampionEvaluation,
    ClassMetrics,
    ClassPrecisionRecallCurve,
    Evaluation,
    FeatureImportance,
    FeatureSpec,
    ImportanceBounds,
    ModelInputs,
    PrecisionRecallCurve,
    RocCurve,
    Selection,
    field_values,
)
from tollgate.steps.labels import DEFAULT_DECISION_THRESHOLD, decision_threshold, positive_decisions
from tollgate.steps.preprocess import LABEL

if TYPE_CHECKING:
    from tollgate.config import FairnessConfig, ImportanceConfig
    from tollgate.registry import Registry
    from tollgate.settings import EvaluateSettings

# sklearn.calibration, scipy.stats, fairlearn (tollgate.steps.fairness) and scipy.spatial
# (tollgate.steps.drift) are imported by the functions that use them: every train task imports
# this module for its metrics, and those imports would add about a second to each. For the same
# reason the `fairness` and `importance` config sections (pydantic) are imported only where a
# caller left them out and their defaults are needed.

# Bins of the predicted-probability profile recorded on the test split (as data validation bins features).
PREDICTION_BINS = 10

# Permutation importance re-scores the sampled test rows once per permuted feature and repeat;
# the defaults (the `importance` config section, ImportanceConfig) keep it to a few seconds on
# the default data and bounded on a wide file, while ranking the top features stably.
TOP_FEATURES = 10
# Permuted copies of the sample are stacked into one graph run, up to this many cells (rows x
# input columns x copies). A run has a fixed cost that grows with the number of inputs: onnxruntime's
# Python `InferenceSession.run` checks the feed names against a list, quadratic in the inputs (1.4 s
# per run for 10,000 inputs here, whatever the rows; microsoft/onnxruntime#24331 would make it
# linear), so one run per permutation would pay it thousands of times. Past ~30M cells the run's
# own work dominates (measured on the 10,000-column bench file); 32M float32 cells are 128 MB of feeds.
IMPORTANCE_STACK_CELLS = 32_000_000
# A categorical column keeps this many most frequent values (the rest pooled) when columns are
# screened by their association with the predictions.
SCREEN_GROUPS = 10


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


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[Any]) -> list[ClassMetrics]:
    """One row per class, in class order: precision, recall, F1, support and one-vs-rest ROC AUC."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(classes)))
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, predicted, labels=labels,
                                                                     zero_division=0)
    aucs = one_vs_rest_auc(y_true, proba)
    return [ClassMetrics(classes[i], precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]),
                         support=int(support[i]), roc_auc_ovr=aucs[i]) for i in labels]


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
            curves_by_class.append(ClassPrecisionRecallCurve(classes[index], precision=[], recall=[]))
            continue
        precision, recall, _ = precision_recall_curve(positive, proba[:, index])
        if len(precision) > max_points:
            keep = np.unique(np.linspace(0, len(precision) - 1, max_points).round().astype(int))
            precision, recall = precision[keep], recall[keep]
        curves_by_class.append(ClassPrecisionRecallCurve(
            classes[index], precision=precision.tolist(), recall=recall.tolist(),
            average_precision=float(average_precision_score(positive, proba[:, index]))))
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
        "roc": RocCurve(fpr.tolist(), tpr.tolist(), thresholds.tolist()),
        "pr": PrecisionRecallCurve(precision.tolist(), recall.tolist()),
        "calibration": CalibrationCurve(predicted=predicted_mean.tolist(), observed=observed.tolist()),
    }


def _default_importance() -> ImportanceConfig:
    from tollgate.config import ImportanceConfig

    return ImportanceConfig()


def _graph_inputs(model, sample: pd.DataFrame, columns: list[str]
                  ) -> tuple[dict[str, Any], Callable[[dict[str, Any]], np.ndarray]]:
    """The sample as one array per input column, and a function scoring such a table.

    An :class:`OnnxModel` gets its inputs (every schema column) cast once, as the server casts
    them (per value, so permuting after the cast is permuting before it), and is run on
    ready-made feeds; any other object with ``predict_proba(frame)`` gets ``columns`` back as a
    DataFrame.
    """
    schema = getattr(model, "schema", None)
    if schema is not None and hasattr(model, "run"):
        from tollgate.serving.schema import model_inputs

        table = model_inputs(sample, schema)
        base = {name: table[name].to_numpy() for name in table.columns}

        def predict(inputs: dict[str, Any]) -> np.ndarray:
            return np.asarray(model.run({name: values.reshape(-1, 1) for name, values in inputs.items()}),
                              dtype=np.float64)
    else:
        base = {name: sample[name].array for name in columns}  # keeps extension dtypes (Int64, boolean)

        def predict(inputs: dict[str, Any]) -> np.ndarray:
            return np.asarray(model.predict_proba(pd.DataFrame(inputs, columns=columns)), dtype=np.float64)
    return base, predict


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share one) of a float column, missing values at the mean rank."""
    from scipy.stats import rankdata

    present = ~np.isnan(values)
    ranks = np.full(len(values), (present.sum() + 1) / 2.0)
    if present.any():
        ranks[present] = rankdata(values[present])
    return ranks


def _category_codes(values: Any, groups: int) -> np.ndarray:
    """Codes of the ``groups`` most frequent values (the rest pooled into one, missing into another)."""
    factor, _ = pd.factorize(pd.Series(np.asarray(values), dtype=object), use_na_sentinel=True)
    counts = np.bincount(factor[factor >= 0], minlength=1)
    keep = np.argsort(-counts, kind="stable")[:groups]
    mapping = np.full(len(counts), groups, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    return np.where(factor >= 0, mapping[np.maximum(factor, 0)], groups + 1)


def _correlation_ratio(codes: np.ndarray, target: np.ndarray) -> float:
    """Eta squared of each ``target`` column across the groups in ``codes``, adjusted for the number
    of groups (as adjusted R squared is, so a many-valued column is not favoured), max over columns."""
    n = len(codes)
    counts = np.bincount(codes).astype(np.float64)
    occupied = counts > 0
    groups = int(occupied.sum())
    if groups < 2 or n <= groups:
        return 0.0
    best = 0.0
    for column in target.T:
        total = float(((column - column.mean()) ** 2).sum())
        if total <= 0:
            continue
        sums = np.bincount(codes, weights=column)[occupied]
        eta2 = float((sums ** 2 / counts[occupied]).sum() - n * column.mean() ** 2) / total
        best = max(best, 1.0 - (1.0 - eta2) * (n - 1) / (n - groups))
    return best


def _rank_correlation(values: np.ndarray, target_ranks: np.ndarray) -> float:
    """Squared Spearman correlation of a numeric column with each target column, max over columns."""
    ranks = _ranks(values.astype(np.float64))
    centred = ranks - ranks.mean()
    spread = float(np.sqrt((centred ** 2).sum()))
    if spread == 0:
        return 0.0
    targets = target_ranks - target_ranks.mean(axis=0)
    norms = np.sqrt((targets ** 2).sum(axis=0))
    correlations = (centred @ targets) / np.where(norms > 0, norms * spread, np.inf)
    return float(np.max(correlations ** 2))


def screen_columns(base: dict[str, Any], columns: list[str], proba: np.ndarray) -> list[str]:
    """``columns`` ordered by how strongly the model's predicted probabilities move with each: the
    squared rank (Spearman) correlation for a numeric column, the adjusted correlation ratio over its
    most frequent values for any other (both are shares of the predictions' variance); ties keep
    column order. For a multiclass model, the strongest over the class probabilities.

    Cheap (one pass over the sample, no extra model run), so a wide file permutes the columns most
    likely to matter first. A column that matters only through interactions, or not monotonically,
    can rank low: the report says the other columns were not measured.
    """
    from scipy.stats import rankdata

    target = proba[:, 1:2] if proba.shape[1] == 2 else proba
    target_ranks = np.column_stack([rankdata(column) for column in target.T])
    strength = []
    for name in columns:
        values = np.asarray(base[name])
        # ``base`` is the graph's input feed, typed by the input schema's roles (numeric columns are
        # float tensors, the others text), so the feed's dtype is the schema's classification.
        if values.dtype.kind in "fiu":
            strength.append(_rank_correlation(values, target_ranks))
        else:
            strength.append(_correlation_ratio(_category_codes(values, SCREEN_GROUPS), target))
    return [columns[i] for i in np.argsort(-np.asarray(strength), kind="stable")]


def _importance_score(y: np.ndarray, proba: np.ndarray, classes: int) -> float:
    """Test ROC AUC (macro one-vs-rest for ``classes`` > 2): what a permutation is measured against."""
    if classes > 2:
        aucs = [a for a in one_vs_rest_auc(y, proba) if a is not None]
        return float(np.mean(aucs)) if aucs else 0.0
    return float(roc_auc_score(y, proba[:, 1]))


def top_feature_importance(model, test: pd.DataFrame, columns: list[str], top: int = TOP_FEATURES,
                           settings: ImportanceConfig | None = None, seed: int = 0,
                           classes: int = 2) -> tuple[list[FeatureImportance], ImportanceBounds]:
    """Permutation importance of the model's input columns, largest first, and what was bounded.

    The importance of a column is the drop in test ROC AUC (macro one-vs-rest for ``classes`` > 2)
    when its values are shuffled across the sampled rows. These are the columns a client sends
    (the graph's inputs): a categorical column's one-hot features are shuffled together, which is
    what "this column matters" means to a user. The shuffles are scikit-learn's
    ``permutation_importance`` draws for ``random_state=seed`` (one seed for every column, each
    repeat shuffling the previous one), and with every column permuted the numbers equal it; it is
    not called because it copies and re-casts the whole table for each permuted column, which is
    quadratic in the number of columns, and has no column cap or time budget. Here one stacked
    graph run scores many permuted copies at once and the unpermuted columns are cast once.

    Returns ``(top features, bounds)``; ``bounds`` records the rows sampled of the total, the
    columns permuted of the total and how they were chosen ("all", or "screened": the
    ``max_features`` most associated with the predictions, see :func:`screen_columns`), the
    repeats, the time budget and whether it stopped the loop, and the seconds taken. The result
    is deterministic for a seed unless the budget is hit (then the columns permuted are a prefix
    of the same order, with the same values).
    """
    settings = settings or _default_importance()
    started = time.monotonic()
    sample = test.sample(n=min(len(test), settings.max_rows), random_state=seed) if len(test) else test
    y = sample[LABEL].to_numpy().astype(int)
    rows, repeats = len(sample), settings.repeats
    # Scikit-learn's permutation_importance draws: one seed for all columns, each repeat shuffling the last.
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    draws, shuffling, permutation = np.random.RandomState(column_seed), np.arange(rows), np.arange(rows)
    permutations = []
    for _ in range(repeats):
        draws.shuffle(shuffling)
        permutation = permutation[shuffling]
        permutations.append(permutation)

    # Many small predictions: OpenMP thread start-up and spinning (HistGradientBoosting) made
    # this 7x slower on 2 busy cores than a single thread.
    with threadpool_limits(limits=1):
        base, predict = _graph_inputs(model, sample, columns)
        baseline_proba = predict(base)
        baseline = _importance_score(y, baseline_proba, classes)
        order = screen_columns(base, columns, baseline_proba)
        chosen = order[:settings.max_features]
        jobs = [(name, repeat) for name in chosen for repeat in range(repeats)]
        copies = max(1, IMPORTANCE_STACK_CELLS // max(1, rows * len(columns)))
        stacked_index = np.tile(np.arange(rows), min(copies, max(1, len(jobs))))
        stacked = {name: values[stacked_index] for name, values in base.items()}
        scores: dict[str, list[float]] = {}
        budget_hit = False
        for start in range(0, len(jobs), copies):
            if settings.time_budget_seconds is not None and time.monotonic() - started >= settings.time_budget_seconds:
                budget_hit = True
                break
            batch = jobs[start:start + copies]
            inputs = stacked if len(batch) * rows == len(stacked_index) else \
                {name: values[:len(batch) * rows] for name, values in stacked.items()}
            inputs, copied = dict(inputs), set()
            for block, (name, repeat) in enumerate(batch):
                if name not in copied:  # only the permuted columns are copied
                    inputs[name] = inputs[name].copy()
                    copied.add(name)
                inputs[name][block * rows:(block + 1) * rows] = base[name][permutations[repeat]]
            proba = predict(inputs)
            for block, (name, _) in enumerate(batch):
                scores.setdefault(name, []).append(
                    _importance_score(y, proba[block * rows:(block + 1) * rows], classes))
    measured = [name for name in chosen if len(scores.get(name, [])) == repeats]
    position = {name: i for i, name in enumerate(columns)}
    drops = {name: baseline - np.asarray(scores[name]) for name in measured}
    ranked = sorted(measured, key=lambda name: (-float(drops[name].mean()), position[name]))
    results = [FeatureImportance(name, float(drops[name].mean()), float(drops[name].std())) for name in ranked]
    bounds = ImportanceBounds(rows_sampled=rows, rows_total=int(len(test)), features_permuted=len(measured),
                              features_total=len(columns),
                              selection="all" if len(chosen) == len(columns) else "screened",
                              max_features=settings.max_features, repeats=repeats,
                              time_budget_seconds=settings.time_budget_seconds, budget_hit=budget_hit,
                              seconds=round(time.monotonic() - started, 3))
    return results[:top], bounds


def score(model, test: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Positive-class probabilities of ``model`` (an :class:`OnnxModel`) on ``test``, as float64."""
    return np.asarray(model.predict_proba(test[columns])[:, 1], dtype=np.float64)


def evaluate_model(model, test: pd.DataFrame, columns: list[str],
                   fairness: FairnessConfig | None = None, classes: list[Any] | None = None,
                   threshold: float | None = None, importance: ImportanceConfig | None = None
                   ) -> dict[str, Any]:
    """Metrics, curves and top-feature importance of one model on the test split.

    ``fairness`` is the ``fairness`` config section; with sensitive attributes
    configured (and present in ``test``), the result has per-attribute group fairness.
    ``classes`` (a multiclass model's class order) switches to the multiclass metrics,
    the k x k confusion matrix, per-class curves and the per-class table.

    A binary model's decisions (thresholded metrics, confusion matrix, fairness) use
    ``threshold``, by default the ``decision_threshold`` its input schema records
    (``model.schema``, as :class:`~tollgate.serving.runtime.OnnxModel` holds it): the rule
    the server will answer with. The result records it as ``decision_threshold``.
    ``importance`` is the ``importance`` config section (None: its defaults); what it
    bounded is recorded under ``importance_bounds`` (see :func:`top_feature_importance`).
    """
    from tollgate.steps.drift import numeric_profile
    from tollgate.steps.fairness import fairness_report

    settings = importance or _default_importance()
    if classes is not None:
        return _evaluate_multiclass(model, test, columns, fairness, classes, settings)
    if threshold is None:
        threshold = decision_threshold(getattr(model, "schema", None))
    proba = score(model, test, columns)
    y_true = test[LABEL].to_numpy()
    result = {"metrics": classification_metrics(y_true, proba, threshold), **curves(y_true, proba, threshold),
              "decision_threshold": threshold, "rows": int(len(test)),
              # The reference `tollgate monitor` compares live predicted probabilities with.
              "prediction_profile": numeric_profile(pd.Series(proba), PREDICTION_BINS)}
    result["importance"], result["importance_bounds"] = top_feature_importance(model, test, columns, settings=settings)
    if fairness is not None and fairness.sensitive_attributes:
        result["fairness"] = fairness_report(test, y_true, proba, fairness.sensitive_attributes, threshold,
                                             min_group_size=fairness.min_group_size,
                                             min_group_positives=fairness.min_group_positives)
    return result


def _evaluate_multiclass(model, test: pd.DataFrame, columns: list[str], fairness: FairnessConfig | None,
                         classes: list[Any], settings: ImportanceConfig) -> dict[str, Any]:
    from tollgate.steps.fairness import multiclass_fairness_report

    proba = np.asarray(model.predict_proba(test[columns]), dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(f"the graph answers {proba.shape[1] if proba.ndim == 2 else '?'} probability columns "
                         f"for {len(classes)} classes")
    y_true = test[LABEL].to_numpy()
    result = {"task": "multiclass", "classes": list(classes), "metrics": multiclass_metrics(y_true, proba),
              "per_class": per_class_metrics(y_true, proba, classes), **multiclass_curves(y_true, proba, classes),
              "rows": int(len(test))}
    result["importance"], result["importance_bounds"] = top_feature_importance(
        model, test, columns, settings=settings, classes=len(classes))
    if fairness is not None and fairness.sensitive_attributes:
        result["fairness"], skipped = multiclass_fairness_report(
            test, y_true, proba.argmax(axis=1), fairness.sensitive_attributes, classes, fairness.classes,
            min_group_size=fairness.min_group_size, min_group_positives=fairness.min_group_positives)
        if skipped:
            result["fairness_skipped"] = skipped
    return result


def evaluate_champion(champion_model, champion_schema: dict[str, Any], test: pd.DataFrame,
                      classes: list[Any] | None = None, version: int = 0) -> ChampionEvaluation:
    """Score the champion on the same test rows, with the columns *it* was trained on.

    Returns the champion ``version``'s metrics, or the ``error`` reason when the champion cannot read
    this data (for example a column it needs is gone), or is not the same kind of model
    as the candidate (binary vs multiclass, or other classes; ``classes`` is the
    candidate's class order, None for binary): change thresholds compare like with like,
    so the gate then refuses to compare.
    """
    inputs = ModelInputs.from_dict(champion_schema)
    columns = inputs.names
    missing = [c for c in columns if c not in test.columns]
    if missing:
        return ChampionEvaluation(version, error=(
            f"the champion needs columns this data does not have: {missing}; put them back in the data to "
            "compare (this run may still leave them out of its own features with data.drop)"))
    theirs = inputs.classes if inputs.multiclass else None  # the champion's class order; None: binary
    if (theirs is None) != (classes is None):
        kinds = ("multiclass" if theirs is not None else "binary", "multiclass" if classes is not None else "binary")
        return ChampionEvaluation(version, error=(
            f"the champion is a {kinds[0]} model and the candidate a {kinds[1]} one: their metrics are not "
            "comparable; promote the candidate deliberately (tollgate models promote) if the task really changed"))
    if classes is not None and theirs is not None:
        if [str(c) for c in theirs] != [str(c) for c in classes]:
            return ChampionEvaluation(version, error=(
                f"the champion predicts classes {theirs} and the candidate {list(classes)}: their metrics are not "
                "comparable; promote the candidate deliberately (tollgate models promote) if the classes really "
                "changed"))
        try:
            proba = np.asarray(champion_model.predict_proba(test[columns]), dtype=np.float64)
        except Exception as exc:  # an unloadable or incompatible champion must not crash the run
            return ChampionEvaluation(version, error=f"the champion could not score the test set: "
                                                     f"{type(exc).__name__}: {exc}")
        metrics = multiclass_metrics(test[LABEL].to_numpy(), proba)
        if any(math.isnan(v) for v in metrics.values()):
            return ChampionEvaluation(version, error="the champion produced NaN metrics on the test set")
        return ChampionEvaluation(version, metrics=metrics)
    try:
        proba = score(champion_model, test, columns)
    except Exception as exc:  # an unloadable or incompatible champion must not crash the run
        return ChampionEvaluation(version, error=f"the champion could not score the test set: "
                                                 f"{type(exc).__name__}: {exc}")
    # The champion decides as it serves: with the threshold its own input schema records.
    threshold = decision_threshold(champion_schema)
    metrics = classification_metrics(test[LABEL].to_numpy(), proba, threshold)
    if any(math.isnan(v) for v in metrics.values()):
        return ChampionEvaluation(version, error="the champion produced NaN metrics on the test set")
    return ChampionEvaluation(version, metrics=metrics, decision_threshold=threshold)


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
        return evaluate_champion(model, schema, test, classes=classes, version=production.version)


def run_evaluate(candidate_dir: str | Path, selection: Selection, spec: FeatureSpec, test: pd.DataFrame,
                 settings: EvaluateSettings, registry: Registry, model_name: str) -> Evaluation:
    """Evaluate as the DAG runs it: the selected candidate's ``model.onnx`` in ``candidate_dir``
    and the production champion, on the same test rows."""
    from tollgate.registry import ONNX_FILE
    from tollgate.serving.runtime import OnnxModel

    classes = spec.classes if spec.multiclass else None
    model = OnnxModel.from_file(os.fspath(Path(candidate_dir) / ONNX_FILE), spec.schema)
    scored = evaluate_model(model, test, spec.columns, fairness=settings.fairness, classes=classes,
                            importance=settings.importance)
    winner = selection.winner
    candidate = CandidateEvaluation(**field_values(CandidateEvaluation, {
        **scored, "candidate_id": winner.candidate_id, "family": winner.family, "params": winner.params,
        "validation_metrics": winner.validation_metrics, "selection_metric": selection.selection_metric,
        "fit_seconds": winner.fit_seconds, "onnx_export": winner.onnx_export, "task": spec.task}))
    return Evaluation(candidate=candidate, champion=score_champion(registry, model_name, test, classes))


@dataclass
class KfpView:
    """What the KFP UI shows of an evaluation: scalar metrics (test metrics and the bounded fairness
    measures), the confusion matrix with its class names (the model's class order), the ROC curve
    (binary only), the artifact's metadata, and the headline metric the task returns."""

    scalars: dict[str, float]
    confusion: tuple[list[str], list[list[int]]]
    roc: tuple[list[float], list[float], list[float]] | None
    metadata: dict[str, Any]
    headline: float


def kfp_view(evaluation: Evaluation) -> KfpView:
    """The evaluate task's KFP outputs for ``evaluation`` (see :class:`KfpView`)."""
    candidate, champion = evaluation.candidate, evaluation.champion
    scalars = dict(candidate.metrics)
    for attribute, measures in candidate.fairness_measures().items():
        scalars.update({f"{attribute}_{measure}": value for measure, value in measures.items() if value is not None})
    names = [str(c) for c in candidate.classes or []] if candidate.multiclass else ["negative", "positive"]
    roc = None
    if not candidate.multiclass and candidate.roc is not None:
        roc = (candidate.roc.fpr, candidate.roc.tpr, candidate.roc.thresholds)
    headline = candidate.headline_metric
    return KfpView(scalars, (names, candidate.confusion_matrix), roc,
                   {f"candidate_{headline}": candidate.metrics[headline],
                    "champion_version": champion.version if champion else None},
                   candidate.metrics[headline])
