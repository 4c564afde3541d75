"""Group fairness of a classifier's decisions on the test split, measured with fairlearn.

For each sensitive attribute: per-group selection rate, true-positive rate (TPR) and
false-positive rate (FPR) from a fairlearn ``MetricFrame``; then

* disparate impact = smallest / largest group selection rate (fairlearn's
  ``demographic_parity_ratio``; the "four-fifths rule" asks for >= 0.8);
* equal-opportunity difference = largest - smallest group TPR (fairlearn's
  ``equal_opportunity_difference``).

Groups smaller than ``min_group_size`` are reported but left out of both summary numbers:
a rate over a handful of rows would make the gate flip on noise. TPR is a rate over a
group's *positives*, so a group needs ``min_group_positives`` of them before its TPR is
measured (a large group with 4 positives gives TPR 1.0 or 0.5 by chance); below that its
TPR is reported as unmeasured and it takes no part in equal opportunity.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_ratio,
    equal_opportunity_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from tollgate.steps.drift import MISSING
from tollgate.steps.labels import DEFAULT_DECISION_THRESHOLD, positive_decisions

if TYPE_CHECKING:
    from tollgate.config import SensitiveAttributeConfig

GROUP_METRICS = {
    "count": count,
    "selection_rate": partial(selection_rate, pos_label=1),
    "tpr": partial(true_positive_rate, pos_label=1),
    "fpr": partial(false_positive_rate, pos_label=1),
}


def group_labels(values: pd.Series, bins: list[float] | None = None) -> tuple[pd.Series, list[str]]:
    """The group of each row as text, and the groups in display order.

    Numeric columns with ``bins`` become ranges (``<30``, ``30-50``, ``>=50``) in numeric order.
    """
    if bins:
        edges = [-np.inf, *bins, np.inf]
        names = [f"<{bins[0]:g}"] + [f"{a:g}-{b:g}" for a, b in itertools.pairwise(bins)] + [f">={bins[-1]:g}"]
        grouped = pd.cut(pd.to_numeric(values, errors="coerce"), edges, right=False, labels=names)
        return grouped.astype(object).where(grouped.notna(), MISSING).astype(str), names + [MISSING]
    labels = values.astype(str).where(values.notna(), MISSING)
    return labels, sorted(labels.unique())


def attribute_fairness(y_true: np.ndarray, y_pred: np.ndarray, groups: pd.Series, *,
                       min_group_size: int, min_group_positives: int, order: list[str] | None = None
                       ) -> dict[str, Any]:
    """Per-group rates and the two summary disparities for one sensitive attribute."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    groups = pd.Series(np.asarray(groups), name="group")
    frame = MetricFrame(metrics=GROUP_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    by_group = frame.by_group
    positives = pd.Series(y_true).groupby(groups.to_numpy()).sum()
    rows: list[dict[str, Any]] = []
    for group, values in by_group.iterrows():
        size = int(values["count"])
        group_positives = int(positives.get(group, 0))
        rows.append({"group": str(group), "count": size, "positives": group_positives,
                     "selection_rate": float(values["selection_rate"]),
                     "tpr": float(values["tpr"]) if group_positives >= min_group_positives else None,
                     "fpr": float(values["fpr"]) if size > positives.get(group, 0) else None,
                     "bounded": size >= min_group_size})
    if order:
        rank = {name: position for position, name in enumerate(order)}
        rows.sort(key=lambda row: rank.get(row["group"], len(rank)))
    eligible = groups.isin([r["group"] for r in rows if r["bounded"]]).to_numpy()
    # A group whose TPR is unmeasured (too few positives) cannot take part in equal opportunity.
    with_positives = eligible & groups.isin([r["group"] for r in rows if r["tpr"] is not None]).to_numpy()
    # Why a disparity is None, for the gate's message.
    unmeasured: dict[str, str] = {}
    result: dict[str, Any] = {"groups": rows, "min_group_size": min_group_size,
                              "min_group_positives": min_group_positives, "unmeasured": unmeasured,
                              "disparate_impact": None, "equal_opportunity_difference": None}
    if len(set(groups[eligible])) < 2:
        unmeasured["disparate_impact"] = f"fewer than two groups with at least {min_group_size} test rows"
    else:
        result["disparate_impact"] = _finite(demographic_parity_ratio(
            y_true[eligible], y_pred[eligible], sensitive_features=groups[eligible].to_numpy()))
        if result["disparate_impact"] is None:
            unmeasured["disparate_impact"] = "no group has a single positive decision at this threshold"
    if len(set(groups[with_positives])) < 2:
        unmeasured["equal_opportunity_difference"] = (f"fewer than two groups with at least {min_group_size} "
                                                      f"test rows and {min_group_positives} positives")
    else:
        result["equal_opportunity_difference"] = _finite(equal_opportunity_difference(
            y_true[with_positives], y_pred[with_positives], sensitive_features=groups[with_positives].to_numpy()))
    best_rate = max((r["selection_rate"] for r in rows if r["bounded"]), default=0.0)
    for row in rows:
        comparable = best_rate > 0 and row["bounded"]
        row["selection_ratio_to_highest"] = row["selection_rate"] / best_rate if comparable else None
    return result


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def fairness_report(test: pd.DataFrame, y_true: np.ndarray, positive_proba: np.ndarray,
                    attributes: list[SensitiveAttributeConfig], threshold: float = DEFAULT_DECISION_THRESHOLD,
                    *, min_group_size: int, min_group_positives: int) -> dict[str, Any]:
    """Fairness of the decisions ``positive_proba >= threshold`` for every configured attribute.

    ``threshold`` is the model's ``decision_threshold``: the decisions measured are the ones
    its metrics count and the server answers.

    ``attributes`` are ``fairness.sensitive_attributes`` (a column, and cut points for a numeric one).
    Returns ``{attribute: {...}}``; empty when no attribute is configured.
    """
    y_pred = positive_decisions(positive_proba, threshold).astype(int)
    report = {}
    for attribute in attributes:
        column = attribute.column
        groups, order = group_labels(test[column], attribute.bins)
        report[column] = {**attribute_fairness(y_true, y_pred, groups.reset_index(drop=True),
                                                 min_group_size=min_group_size, min_group_positives=min_group_positives,
                                                 order=order),
                          "bins": attribute.bins, "threshold": threshold}
    return report


# Measures defined for a positive class; a multiclass model has them only one-vs-rest per class.
BINARY_ONLY_MEASURES = ("selection rate", "TPR", "FPR", "disparate impact", "equal-opportunity difference")


def multiclass_fairness_report(test: pd.DataFrame, y_true: np.ndarray, predicted: np.ndarray,
                               attributes: list[SensitiveAttributeConfig], classes: list[Any], measured: list[Any],
                               *, min_group_size: int, min_group_positives: int
                               ) -> tuple[dict[str, Any], str | None]:
    """One-vs-rest fairness of a multiclass model for each class in ``measured`` (``fairness.classes``).

    ``y_true`` and ``predicted`` hold class positions in ``classes`` order. For class ``c``
    a row is "positive" when its label is ``c`` and "selected" when the model predicts
    ``c``; the record of each (attribute, class) pair is keyed ``"<attribute> (class <c>)"``
    and is bounded by the gate like a binary attribute. Returns ``(report, skipped)``:
    ``skipped`` says, in one sentence, which measures were not computed and why (no class
    named, or a named class the model does not have), or is None.
    """
    by_text = {str(c): position for position, c in enumerate(classes)}
    wanted = [c for c in measured if str(c) in by_text]
    unknown = [c for c in measured if str(c) not in by_text]
    notes = []
    if not measured:
        notes.append(f"{', '.join(BINARY_ONLY_MEASURES)} are binary-only measures and were skipped for this "
                     f"{len(classes)}-class model; name classes in fairness.classes to measure them one-vs-rest")
    if unknown:
        notes.append(f"fairness.classes {unknown} are not classes of this model ({classes}) and were skipped")
    report = {}
    for attribute in attributes:
        column = attribute.column
        groups, order = group_labels(test[column], attribute.bins)
        for value in wanted:
            position = by_text[str(value)]
            record = attribute_fairness((np.asarray(y_true) == position).astype(int),
                                        (np.asarray(predicted) == position).astype(int),
                                        groups.reset_index(drop=True), min_group_size=min_group_size,
                                        min_group_positives=min_group_positives, order=order)
            report[f"{column} (class {value})"] = {**record, "bins": attribute.bins, "class": value,
                                                   "threshold": None}
    return report, "; ".join(notes) or None
