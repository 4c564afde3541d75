"""Distribution drift of one feature between the reference (training) data and new data.

As in TFDV: numeric features are binned on the reference's quantiles and compared with
the Jensen-Shannon divergence; categorical features are compared with the L-infinity
distance between category shares. Missing values are a bin/category of their own, so
a column that suddenly goes missing also drifts.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tollgate.records import ColumnSchema, FeatureDrift, NumericProfile

if TYPE_CHECKING:
    from tollgate.config import DriftConfig

MISSING = "<missing>"


def numeric_profile(values: pd.Series, bins: int) -> NumericProfile:
    """Bin edges at the reference's quantiles and the reference's share in each bin.

    Edges are the interior quantiles (duplicates from ties removed); the outer bins
    are open-ended so new values beyond the reference's range still land somewhere.
    """
    present = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    if present.empty:
        edges: list[float] = []
    else:
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        edges = sorted(set(np.quantile(present.to_numpy(), quantiles).round(12).tolist()))
    return NumericProfile(edges, numeric_shares(values, edges))


def numeric_shares(values: pd.Series, edges: list[float]) -> list[float]:
    """Share of ``values`` in each bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)``, then the missing share."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    total = len(numbers)
    if total == 0:
        return [0.0] * (len(edges) + 2)
    missing = np.isnan(numbers)
    positions = np.searchsorted(np.asarray(edges, dtype=float), numbers[~missing], side="left")
    counts = np.bincount(positions, minlength=len(edges) + 1).astype(float)
    return (np.append(counts, missing.sum()) / total).tolist()


def category_shares(values: pd.Series, limit: int | None = None) -> dict[str, float]:
    """Share of each category (as text, most frequent first), missing values under ``<missing>``."""
    if len(values) == 0:
        return {}
    text = values.astype(str).where(values.notna(), MISSING)
    shares = text.value_counts(normalize=True)
    if limit is not None:
        shares = shares.head(limit)
    return {str(k): float(v) for k, v in shares.items()}


def jensen_shannon(p: list[float] | np.ndarray, q: list[float] | np.ndarray) -> float:
    """Jensen-Shannon divergence with log base 2: 0 for identical, 1 for disjoint distributions.

    scipy's ``jensenshannon`` returns the *distance* (the square root of the divergence);
    TFDV's threshold is on the divergence, so it is squared here.
    """
    # Imported here: scipy.spatial costs validate (and preprocess, which imports validate) about
    # 0.1 s, and only a run with a reference version compares distributions.
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0 if p.sum() == q.sum() else 1.0
    return max(0.0, min(1.0, float(jensenshannon(p, q, base=2) ** 2)))


def l_infinity(reference: dict[str, float], current: dict[str, float]) -> float:
    """Largest absolute difference in share over the union of categories."""
    keys = set(reference) | set(current)
    return max((abs(reference.get(k, 0.0) - current.get(k, 0.0)) for k in keys), default=0.0)


def numeric_drift(column: str, profile: NumericProfile, values: pd.Series, threshold: float) -> FeatureDrift:
    """Jensen-Shannon divergence of ``values`` binned on the reference ``profile``'s edges."""
    current = numeric_shares(values, profile.edges)
    labels = _bin_labels(profile.edges) + [MISSING]
    return FeatureDrift(column, "numeric", "jensen_shannon", jensen_shannon(profile.shares, current),
                        threshold, labels, list(profile.shares), current)


def categorical_drift(column: str, reference: dict[str, float], values: pd.Series, threshold: float) -> FeatureDrift:
    """L-infinity distance between the reference category shares and those of ``values``."""
    current = category_shares(values)
    labels = list(reference) + [k for k in current if k not in reference]
    return FeatureDrift(column, "categorical", "l_infinity", l_infinity(reference, current), threshold, labels,
                        [reference.get(k, 0.0) for k in labels], [current.get(k, 0.0) for k in labels])


def column_drift(column: ColumnSchema, values: pd.Series, settings: DriftConfig) -> FeatureDrift | None:
    """Drift of ``values`` from a data schema's feature column, at its threshold (a per-feature
    override, else the numeric or categorical one); None for a column with no distribution
    recorded. Data validation and ``tollgate monitor`` both measure drift this way."""
    if column.profile is not None:
        return numeric_drift(column.name, column.profile, values,
                             settings.features.get(column.name, settings.numeric_threshold))
    if column.categories is not None:
        return categorical_drift(column.name, column.categories, values,
                                 settings.features.get(column.name, settings.categorical_threshold))
    return None


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    bounds = [f"{e:.4g}" for e in edges]
    return [f"<={bounds[0]}"] + [f"{a}..{b}" for a, b in itertools.pairwise(bounds)] + [f">{bounds[-1]}"]
