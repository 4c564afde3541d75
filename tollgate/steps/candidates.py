"""The candidate grid: model families and one :class:`CandidateSpec` per grid point.

Kept apart from :mod:`tollgate.steps.train` because the runner expands the grid when it
builds the pipeline, and should not import pandas or scikit-learn to do it.
"""

from __future__ import annotations

import importlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from tollgate.errors import TollgateError
from tollgate.metrics import MODEL_FAMILIES, ModelFamily

# Each model family's estimator class, looked up by module and name when a candidate is built
# (the families themselves are listed once, as tollgate.metrics.ModelFamily): the runner, which
# expands the grid, and the tasks that only read train's records import no estimator.
_ESTIMATOR_PATHS: dict[ModelFamily, tuple[str, str]] = {
    "logistic_regression": ("sklearn.linear_model", "LogisticRegression"),
    "hist_gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingClassifier"),
    "random_forest": ("sklearn.ensemble", "RandomForestClassifier"),
}
# Families whose estimator takes ``random_state`` (the run's seed is filled in). Written out
# so that expanding the grid (done by the runner, when the pipeline is built) imports no
# estimator; tests/test_export.py checks it against each class's get_params().
SEEDED_FAMILIES: frozenset[ModelFamily] = frozenset({"logistic_regression", "hist_gradient_boosting", "random_forest"})


@dataclass(frozen=True)
class CandidateSpec:
    """One grid point: what a train task fits. The runner expands the grid into these when it builds
    the pipeline; they reach the train tasks as ParallelFor items (:func:`loop_items`, :func:`grid_point`)."""

    candidate_id: str          # the candidate's name, with its grid values when it has a grid
    family: str                # a tollgate.metrics.ModelFamily
    params: dict[str, Any]     # the estimator's keyword arguments, the run's seed filled in


def estimator_class(family: str) -> type:
    """The scikit-learn estimator class of a model family."""
    if family not in _ESTIMATOR_PATHS:
        raise TollgateError(f"unknown model family {family!r}; choose one of {list(MODEL_FAMILIES)}")
    module, name = _ESTIMATOR_PATHS[family]
    return getattr(importlib.import_module(module), name)


def config_grid(config: Any) -> list[CandidateSpec]:
    """The grid of a :class:`~tollgate.config.TollgateConfig`: its ``train.candidates`` expanded,
    seeded with ``split.seed`` (what the DAG's ParallelFor iterates over)."""
    return expand_candidates([c.model_dump() for c in config.train.candidates], seed=config.split.seed)


def expand_candidates(candidates: list[dict[str, Any]], seed: int = 0) -> list[CandidateSpec]:
    """One spec per grid point of ``candidates`` (``train.candidates`` entries), in a stable order."""
    specs = []
    for candidate in candidates:
        grid = candidate.get("grid") or {}
        keys = sorted(grid)
        for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            params = {**candidate.get("params", {}), **dict(zip(keys, values, strict=True))}
            if candidate["family"] not in _ESTIMATOR_PATHS:
                estimator_class(candidate["family"])  # says which families exist
            if candidate["family"] in SEEDED_FAMILIES:
                params.setdefault("random_state", seed)
            suffix = "-".join(f"{k}={_short(v)}" for k, v in zip(keys, values, strict=True))
            specs.append(CandidateSpec(candidate_id=f"{candidate['name']}" + (f"[{suffix}]" if suffix else ""),
                                       family=candidate["family"], params=params))
    return specs


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def loop_items(grid: list[CandidateSpec]) -> list[dict[str, str]]:
    """The grid as the train ParallelFor's items: ``{"candidate_id", "family", "params_json"}``. Loop
    items travel as protobuf Structs, which turn every int into a float, so each point's parameters
    ride as JSON text (:func:`grid_point` decodes them exactly, in the task). The items are compiled
    into the pipeline and are the train tasks' cache keys: their keys and text must not change."""
    return [{"candidate_id": spec.candidate_id, "family": spec.family, "params_json": json.dumps(spec.params)}
            for spec in grid]


def grid_point(item: dict[str, Any]) -> CandidateSpec:
    """The grid point a :func:`loop_items` item carries."""
    return CandidateSpec(candidate_id=item["candidate_id"], family=item["family"], params=json.loads(item["params_json"]))
