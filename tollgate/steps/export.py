"""Export a fitted candidate Pipeline to ONNX: the bytes that are gated, registered and served.

The graph takes one ``[n, 1]`` input per schema column, named after it (float32 for
numeric columns, string for categorical ones; see :mod:`tollgate.serving.schema`) and
returns ``label`` and ``probabilities`` (``[n, 2]``, or ``[n, k]`` for a k-class model, columns in
class order; float32; zipmap off).

A Pipeline that skl2onnx cannot convert fails the train task with
:class:`ExportError`, naming the family and the step (``preprocess/numeric/bins``)
found by converting ever smaller parts of the Pipeline until the failing one is
isolated.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

from tollgate.errors import TollgateError
from tollgate.records import ModelInputs, ProbabilityAgreement
from tollgate.steps.labels import DEFAULT_DECISION_THRESHOLD, positive_decisions


class ExportError(TollgateError):
    """A candidate cannot be exported to ONNX; the message names the family and the step."""


def initial_types(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """skl2onnx input declarations for the contract: one ``[None, 1]`` tensor per column."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [(c.name, FloatTensorType([None, 1]) if c.role == "numeric" else StringTensorType([None, 1]))
            for c in ModelInputs.from_dict(schema).columns]


def _convert(model: Any, schema: dict[str, Any], final_estimator: Any | None) -> bytes:
    from skl2onnx import convert_sklearn

    options = {id(final_estimator): {"zipmap": False}} if final_estimator is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = convert_sklearn(model, initial_types=initial_types(schema), options=options)
    return graph.SerializeToString()


def export_onnx(pipeline: Any, schema: dict[str, Any], family: str, candidate_id: str = "") -> bytes:
    """The fitted ``pipeline`` as ONNX bytes; :class:`ExportError` names what cannot be exported."""
    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    try:
        return _convert(pipeline, schema, final)
    except Exception as exc:  # skl2onnx raises RuntimeError, ValueError, NotImplementedError, ...
        step = locate_unexportable_step(pipeline, schema)
        who = f"candidate {candidate_id} ({family})" if candidate_id else f"family {family}"
        raise ExportError(f"{who} cannot be exported to ONNX: step '{step}' does not convert "
                          f"({type(exc).__name__}: {_first_line(exc)}). Use a preprocessing step or family "
                          "that skl2onnx converts, or remove it from the configuration.") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def locate_unexportable_step(pipeline: Any, schema: dict[str, Any]) -> str:
    """The path of the first step that does not convert, e.g. ``preprocess/numeric/impute`` or ``model``.

    Converts the Pipeline's prefixes; inside a ColumnTransformer, each transformer on its
    own; inside a nested Pipeline, its prefixes. Falls back to the outermost failing part.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        return type(pipeline).__name__
    for index, (name, step) in enumerate(pipeline.steps):
        if _converts(pipeline[: index + 1], schema, step if index == len(pipeline.steps) - 1 else None):
            continue
        if index == 0 and isinstance(step, ColumnTransformer):
            inner = _locate_in_column_transformer(step, schema)
            if inner:
                return f"{name}/{inner}"
        return f"{name} ({type(step).__name__})"
    return "the Pipeline as a whole (each part converts alone)"


def _locate_in_column_transformer(transformer: Any, schema: dict[str, Any]) -> str | None:
    from sklearn.pipeline import Pipeline

    for entry in transformer.transformers_:
        name, inner, _columns = entry
        if inner in ("drop", "passthrough"):
            continue
        if _converts(_only(transformer, entry), schema, None):
            continue
        if isinstance(inner, Pipeline):
            for index, (step_name, step) in enumerate(inner.steps):
                if not _converts(_only(transformer, (name, inner[: index + 1], _columns)), schema, None):
                    return f"{name}/{step_name} ({type(step).__name__})"
        return f"{name} ({type(inner).__name__})"
    return None


def _only(transformer: Any, entry: tuple) -> Any:
    """A shallow copy of a fitted ColumnTransformer that applies one of its transformers."""
    single = copy.copy(transformer)
    single.transformers_ = [entry]
    single.transformers = [entry]
    single.remainder = "drop"
    return single


def _converts(model: Any, schema: dict[str, Any], final_estimator: Any | None) -> bool:
    try:
        _convert(model, schema, final_estimator)
    except Exception:
        return False
    return True


def make_float32_exact(pipeline: Any) -> Any:
    """Adjust a fitted Pipeline, in place, so its float32 ONNX graph takes the same tree branches.

    ONNX tree ensembles compare float32 inputs with float32 thresholds; scikit-learn keeps
    float64 thresholds (midpoints between training values), and rounding one to the
    *nearest* float32 can land it on a data value and send that row down the other branch
    (a 0.02 probability jump on 600 rows of built-in data). Since every value reaching a
    tree is a float32 (the contract's inputs, and imputation statistics rounded to float32
    here), rounding each threshold *down* to a float32 changes no scikit-learn prediction
    (for float32 ``x``: ``x <= t`` exactly when ``x <= round_down(t)``) and makes the
    graph's comparison exact. Returns ``pipeline``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.tree._tree import Tree

    for estimator in _all_estimators(pipeline):
        if isinstance(estimator, SimpleImputer) and getattr(estimator, "statistics_", None) is not None:
            if estimator.statistics_.dtype.kind == "f":
                estimator.statistics_ = estimator.statistics_.astype(np.float32).astype(np.float64)
        if isinstance(estimator, HistGradientBoostingClassifier):
            for predictors in estimator._predictors:  # private, but skl2onnx reads the same nodes
                for predictor in predictors:
                    nodes = predictor.nodes
                    nodes["num_threshold"] = _round_down_to_float32(nodes["num_threshold"])
        tree = getattr(estimator, "tree_", None)
        if isinstance(tree, Tree):
            tree.threshold[:] = _round_down_to_float32(tree.threshold)
    return pipeline


def _round_down_to_float32(values: np.ndarray) -> np.ndarray:
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded.astype(np.float64)


def _all_estimators(estimator: Any):
    """Every estimator inside a Pipeline / ColumnTransformer / ensemble, depth first."""
    yield estimator
    for _, inner in getattr(estimator, "steps", []):
        yield from _all_estimators(inner)
    for entry in getattr(estimator, "transformers_", []):
        if not isinstance(entry[1], str):
            yield from _all_estimators(entry[1])
    for inner in getattr(estimator, "estimators_", []):
        if hasattr(inner, "fit"):
            yield from _all_estimators(inner)


def probability_agreement(onnx_proba: np.ndarray, sklearn_proba: np.ndarray,
                          threshold: float = DEFAULT_DECISION_THRESHOLD) -> ProbabilityAgreement:
    """How far the served graph is from the scikit-learn Pipeline on the same rows.

    ``class_flips`` counts rows whose predicted class differs (the server's rule: positive
    when the positive-class probability is ``>= threshold``, the model's decision threshold;
    multiclass: the argmax); with float32 these are rows sitting on the decision threshold,
    e.g. a random forest's exact 50/50 votes.
    """
    onnx_proba = np.asarray(onnx_proba, dtype=np.float64)
    sklearn_proba = np.asarray(sklearn_proba, dtype=np.float64)
    if onnx_proba.shape[1] > 2:
        # Multiclass: every class's probability; a flip is a different argmax (the server's rule).
        difference = np.abs(onnx_proba - sklearn_proba).max(axis=1)
        flips = onnx_proba.argmax(axis=1) != sklearn_proba.argmax(axis=1)
    else:
        difference = np.abs(onnx_proba[:, 1] - sklearn_proba[:, 1])
        flips = positive_decisions(onnx_proba[:, 1], threshold) != positive_decisions(sklearn_proba[:, 1], threshold)
    return ProbabilityAgreement(rows=int(len(difference)),
                                max_abs_difference=float(difference.max()) if len(difference) else 0.0,
                                class_flips=int(flips.sum()))
