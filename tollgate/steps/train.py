"""Train: expand the candidate grid, fit one Pipeline per grid point, select the best."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import importlib

import pandas as pd
from sklearn.pipeline import Pipeline

from tollgate.errors import TollgateError
from tollgate.steps.evaluate import classification_metrics
from tollgate.steps.preprocess import LABEL, FeatureSpec, build_preprocessor

# Imported on first use: sklearn.ensemble alone takes ~2 s to import, and tasks such as
# `select` that only compare metrics should not pay for it.
_ESTIMATOR_PATHS = {
    "logistic_regression": ("sklearn.linear_model", "LogisticRegression"),
    "hist_gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingClassifier"),
    "random_forest": ("sklearn.ensemble", "RandomForestClassifier"),
}


def estimator_class(family: str) -> type:
    """The scikit-learn estimator class of a model family."""
    if family not in _ESTIMATOR_PATHS:
        raise TollgateError(f"unknown model family {family!r}; choose one of {sorted(_ESTIMATOR_PATHS)}")
    module, name = _ESTIMATOR_PATHS[family]
    return getattr(importlib.import_module(module), name)
# Tree ensembles do not need scaled inputs; skipping the scaler saves time on large tables.
_NEEDS_SCALING = {"logistic_regression"}


@dataclass
class TrainedCandidate:
    """A fitted candidate and how it did on the validation split."""

    candidate_id: str
    family: str
    params: dict[str, Any]
    model: Pipeline
    validation_metrics: dict[str, float]
    fit_seconds: float


def expand_candidates(candidates: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """One spec per grid point: ``{"candidate_id", "family", "params"}``, in a stable order."""
    specs = []
    for candidate in candidates:
        grid = candidate.get("grid") or {}
        keys = sorted(grid)
        for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            params = {**candidate.get("params", {}), **dict(zip(keys, values))}
            if "random_state" in estimator_class(candidate["family"])().get_params():
                params.setdefault("random_state", seed)
            suffix = "-".join(f"{k}={_short(v)}" for k, v in zip(keys, values))
            specs.append({
                "candidate_id": f"{candidate['name']}" + (f"[{suffix}]" if suffix else ""),
                "family": candidate["family"],
                "params": params,
            })
    return specs


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_model(spec: dict[str, Any], features: FeatureSpec) -> Pipeline:
    """The full serving Pipeline for one candidate: preprocessing plus estimator."""
    family = spec["family"]
    try:
        estimator = estimator_class(family)(**spec["params"])
    except TypeError as exc:
        raise TollgateError(f"candidate {spec['candidate_id']}: bad parameter for {family}: {exc}") from exc
    return Pipeline([
        ("preprocess", build_preprocessor(features, scale=family in _NEEDS_SCALING)),
        ("model", estimator),
    ])


def train_candidate(train: pd.DataFrame, validation: pd.DataFrame, spec: dict[str, Any],
                    features: FeatureSpec) -> TrainedCandidate:
    """Fit one candidate on the training split and score it on the validation split."""
    model = build_model(spec, features)
    started = time.perf_counter()
    model.fit(train[features.columns], train[LABEL])
    fit_seconds = time.perf_counter() - started
    probabilities = model.predict_proba(validation[features.columns])[:, 1]
    metrics = classification_metrics(validation[LABEL].to_numpy(), probabilities)
    return TrainedCandidate(spec["candidate_id"], spec["family"], spec["params"], model, metrics, fit_seconds)
