"""Select: pick the best trained candidate by its validation metric.

Kept apart from ``train`` so the select task never imports scikit-learn (about 1 s per task).
"""

from __future__ import annotations

from typing import Any

from tollgate.config import LOWER_IS_BETTER
from tollgate.errors import TollgateError


def select_best(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Pick the result with the best validation ``metric``; ties go to the earlier candidate.

    Each result is ``{"candidate_id", "validation_metrics": {...}, ...}``.
    """
    if not results:
        raise TollgateError("no trained candidates to select from")
    scored = [r for r in results if metric in r["validation_metrics"]]
    if not scored:
        raise TollgateError(f"no candidate reported the selection metric {metric!r}")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(scored, key=lambda r: (sign * r["validation_metrics"][metric], -results.index(r)))
