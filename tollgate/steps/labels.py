"""The classification task and its classes: one place that decides binary vs multiclass and the class order.

``data.task`` is ``auto`` (two classes: binary; three or more: multiclass), ``binary`` or
``multiclass``. A multiclass model's classes are the label values in sorted order (numeric
order for integer labels, text order otherwise), fixed at training time: the probability
tensor's columns, the metadata's ``classes`` and the input schema's ``classes`` all follow
it. Binary runs keep their positive/negative labels and every binary artifact unchanged.

A binary model's decision is one rule everywhere — its test metrics, fairness, the class the
server answers, infra-validation's and export's class checks: a row is positive when its
positive-class probability is ``>= decision_threshold`` (the config's top-level key, 0.5 by
default; ties are positive). Preprocess records it in the input schema, which every version
carries (``input_schema.json``), so a server labels with the threshold of the version it
serves; a version registered before it was recorded reads as 0.5. Multiclass is the argmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# Defined with the records (no heavy imports there) and re-exported; the rule itself is positive_decisions below.
from tollgate.records import BINARY as BINARY
from tollgate.records import DEFAULT_DECISION_THRESHOLD as DEFAULT_DECISION_THRESHOLD
from tollgate.records import MULTICLASS as MULTICLASS
from tollgate.records import decision_threshold as decision_threshold


def plain(value: Any) -> Any:
    """A label as a JSON-friendly Python value (numpy scalars and whole floats become ints)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def class_order(labels: pd.Series) -> list[Any]:
    """The label values present (missing ones ignored), sorted: numbers numerically, anything else as text."""
    values = {plain(v) for v in labels.dropna().unique()}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return sorted(values) if numeric else sorted(values, key=str)


def resolve_task(configured: str, classes: int) -> str:
    """``binary`` or ``multiclass`` for a label with ``classes`` distinct values under ``data.task``."""
    if configured == "auto":
        return MULTICLASS if classes >= 3 else BINARY
    return configured


def encode_labels(labels: pd.Series, classes: list[Any]) -> np.ndarray:
    """Each label's position in ``classes`` (int64); labels compare as text when types differ (CSV '1' vs 1)."""
    index = {str(c): position for position, c in enumerate(classes)}
    text = labels.map(lambda v: str(plain(v)))
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown[:10]} are not among the model's classes {classes}")
    return text.map(index).to_numpy(dtype=np.int64)


def positive_decisions(positive_proba: Any, threshold: float) -> np.ndarray:
    """Which rows a binary model calls positive: probability ``>= threshold`` (ties are positive)."""
    return np.asarray(positive_proba, dtype=np.float64) >= threshold


def positive_mask(labels: pd.Series, positive_label: Any) -> pd.Series:
    """Boolean mask of positive rows; compares as text when types differ (CSV '1' vs config 1)."""
    mask = labels == positive_label
    if not mask.any():
        mask = labels.astype(str) == str(positive_label)
    return mask
