"""Infra-validate: load the candidate the way serving does and check it answers like in-process.

This first version loads the artifact in a fresh process-independent way (joblib from
disk) and checks predictions on sample test rows; the serving issue extends it to a
real model-server process on loopback.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from tollgate.registry import MODEL_FILE
from tollgate.steps.preprocess import FeatureSpec


def infra_validate(model_dir: str, test: pd.DataFrame, spec: FeatureSpec, sample_rows: int = 32) -> dict[str, Any]:
    """Return ``{"passed": bool, "reason": str, ...}``; never raises for a broken artifact."""
    import joblib

    path = os.path.join(model_dir, MODEL_FILE)
    try:
        model = joblib.load(path)
    except Exception as exc:
        return {"passed": False, "reason": f"model artifact does not load: {type(exc).__name__}: {exc}"}
    sample = test[spec.columns].head(sample_rows)
    try:
        proba = model.predict_proba(sample)[:, 1]
    except Exception as exc:
        return {"passed": False, "reason": f"model does not predict on sample rows: {type(exc).__name__}: {exc}"}
    if not np.all(np.isfinite(proba)):
        return {"passed": False, "reason": "model returned non-finite probabilities"}
    return {"passed": True, "reason": "loaded and predicted on sample rows", "rows": len(sample)}
