"""Turn a fitted Tollgate Pipeline into plain numpy work done per request.

scikit-learn's ``Pipeline.predict_proba`` on a one-row DataFrame spends ~10 ms here in
pandas and input validation (ColumnTransformer, FunctionTransformer, per-step checks),
many times the estimator's own cost. Everything that work derives from is fixed once
the model is fitted, so at load time we read the fitted parameters out of the
preprocessing steps Tollgate builds (``tollgate.steps.preprocess.build_preprocessor``):

* numeric block: median imputation, missing-value indicators, standard scaling;
* categorical block: text cast, constant imputation, one-hot encoding. The one-hot
  vector of every known category (and of "unknown" and "missing") is obtained by
  running the fitted encoder itself on probe rows, so the infrequent-category and
  unknown-category rules are scikit-learn's, not a re-implementation.

Per request only a matrix is filled and the fitted estimator's ``predict_proba`` runs
on it (for binary logistic regression, its two array operations without the per-call
input validation). The compiled path is checked against ``Pipeline.predict_proba`` on probe rows
(known, unseen and missing values) before it is used; a pipeline of another shape, or
any disagreement, falls back to the DataFrame path, with the reason recorded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tollgate.serving.schema import InputSchema

# A category no client will ever send: probes what the encoder does with unseen values.
_UNSEEN = "\x00tollgate-unseen-category\x00"
# Compiled and reference probabilities must agree this closely (same float operations).
_TOLERANCE = 1e-9


class NotCompilable(Exception):
    """The pipeline is not of the shape the compiled path understands."""


def frame_from_columns(schema: InputSchema, columns: dict[str, Any]) -> pd.DataFrame:
    """The DataFrame ``Pipeline.predict_proba`` expects, built once from column arrays."""
    data = {}
    for column in schema.columns:
        values = columns[column.name]
        if column.role == "numeric":
            data[column.name] = values
        else:
            data[column.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data, columns=schema.names)


class CompiledPipeline:
    """``predict_proba`` of a fitted Tollgate Pipeline without pandas on the request path."""

    def __init__(self, pipeline: Any, schema: InputSchema):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            raise NotCompilable("model is not a two-step Pipeline (preprocess, estimator)")
        preprocess, self.estimator = pipeline.steps[0][1], pipeline.steps[1][1]
        if not isinstance(preprocess, ColumnTransformer) or preprocess.sparse_output_:
            raise NotCompilable("first step is not a dense ColumnTransformer")
        self.schema = schema
        self.width = 0
        self._numeric: tuple[list[int], Any] | None = None
        self._categorical: list[tuple[int, dict[str, int], np.ndarray, int, int]] = []
        position = {name: i for i, name in enumerate(schema.names)}
        blocks = []
        for name, transformer, columns in preprocess.transformers_:
            if transformer == "drop" or (name == "remainder" and not len(columns)):
                continue
            if not isinstance(transformer, Pipeline) or any(isinstance(c, int) for c in columns):
                raise NotCompilable(f"transformer {name!r} is not a Pipeline over named columns")
            blocks.append((name, transformer, list(columns), preprocess.output_indices_[name]))
        for name, transformer, columns, out in blocks:
            steps = [step for _, step in transformer.steps]
            kinds = [type(step) for step in steps]
            if kinds in ([SimpleImputer], [SimpleImputer, StandardScaler]):
                self._compile_numeric(steps, columns, position, out)
            elif kinds == [FunctionTransformer, SimpleImputer, OneHotEncoder]:
                self._compile_categorical(transformer, columns, position, out)
            else:
                raise NotCompilable(f"transformer {name!r} has unsupported steps {[k.__name__ for k in kinds]}")
            self.width = max(self.width, out.stop)
        if self._numeric is None and not self._categorical:
            raise NotCompilable("no transformer to compile")
        self._estimator_proba = _direct_proba(self.estimator) or self.estimator.predict_proba

    # -- compilation ----------------------------------------------------------------------

    def _compile_numeric(self, steps: list[Any], columns: list[str], position: dict[str, int], out: slice) -> None:
        if self._numeric is not None:
            raise NotCompilable("more than one numeric block")
        imputer = steps[0]
        if imputer.strategy not in ("mean", "median", "most_frequent", "constant"):
            raise NotCompilable(f"imputer strategy {imputer.strategy!r}")
        statistics = np.asarray(imputer.statistics_, dtype=np.float64)
        if np.isnan(statistics).any():
            raise NotCompilable("an imputed numeric column was empty at fit time")
        if not (isinstance(imputer.missing_values, float) and math.isnan(imputer.missing_values)):
            raise NotCompilable("numeric imputer does not impute NaN")
        indicator = imputer.indicator_.features_ if imputer.add_indicator else np.array([], dtype=int)
        width = len(columns) + len(indicator)
        if width != out.stop - out.start:
            raise NotCompilable("numeric block width does not match the fitted transformer")
        shift = scale = None
        if len(steps) == 2:
            scaler = steps[1]
            shift = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
            scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None
        self._numeric = ([position[c] for c in columns], (statistics, np.asarray(indicator), shift, scale, out))

    def _compile_categorical(self, transformer: Any, columns: list[str], position: dict[str, int], out: slice) -> None:
        from tollgate.steps.preprocess import categories_as_text

        to_text, imputer, encoder = (step for _, step in transformer.steps)
        if to_text.func is not categories_as_text:
            raise NotCompilable("categorical text cast is not Tollgate's categories_as_text")
        if imputer.strategy != "constant" or encoder.drop_idx_ is not None:
            raise NotCompilable("categorical imputer/encoder settings are not Tollgate's")
        sizes = list(getattr(encoder, "_n_features_outs", []))
        if len(sizes) != len(columns) or sum(sizes) != out.stop - out.start:
            raise NotCompilable("one-hot block layout is not readable")
        # Probe rows: every known category, an unseen one and a missing one, column by column.
        probe_values = {c: [str(v) for v in cats] + [_UNSEEN, None]
                        for c, cats in zip(columns, encoder.categories_)}
        longest = max(len(v) for v in probe_values.values())
        frame = pd.DataFrame({c: pd.Series((v + [v[0]] * longest)[:longest], dtype=object) for c, v in probe_values.items()})
        encoded = np.asarray(transformer.transform(frame), dtype=np.float64)
        offset = out.start
        for column, size in zip(columns, sizes):
            values = probe_values[column]
            start = offset - out.start
            table = encoded[:len(values), start:start + size]
            codes = {value: row for row, value in enumerate(values[:-2])}
            self._categorical.append((position[column], codes, np.ascontiguousarray(table), offset, size))
            offset += size

    # -- prediction -----------------------------------------------------------------------

    def transform(self, columns: dict[str, Any], rows: int) -> np.ndarray:
        """The estimator's input matrix for validated columns (name -> values)."""
        matrix = np.empty((rows, self.width), dtype=np.float64)
        names = self.schema.names
        if self._numeric is not None:
            indices, (statistics, indicator, shift, scale, out) = self._numeric
            block = np.column_stack([columns[names[i]] for i in indices]) if rows else np.empty((0, len(indices)))
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, statistics, block)
            width = len(indices)
            matrix[:, out.start:out.start + width] = block
            if len(indicator):
                matrix[:, out.start + width:out.stop] = missing[:, indicator]
            if shift is not None:
                matrix[:, out] -= shift
            if scale is not None:
                matrix[:, out] /= scale
        for column_index, codes, table, offset, size in self._categorical:
            unseen, missing_row = len(table) - 2, len(table) - 1
            get = codes.get
            picks = [missing_row if v is None else get(_text(v), unseen) for v in columns[names[column_index]]]
            matrix[:, offset:offset + size] = table[picks]
        return matrix

    def predict_proba(self, columns: dict[str, Any], rows: int) -> np.ndarray:
        """The estimator's ``predict_proba`` matrix (column 1 is the positive class)."""
        return self._estimator_proba(self.transform(columns, rows))


def _direct_proba(estimator: Any):
    """Binary LogisticRegression's predict_proba without its per-call input validation.

    The same operations scikit-learn runs (``X @ coef_.T + intercept_``, then expit), so
    the answers are identical; the load-time check against the Pipeline confirms it.
    """
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression or len(estimator.classes_) != 2:
        return None
    coef_t, intercept = estimator.coef_.T, estimator.intercept_

    def predict_proba(matrix: np.ndarray) -> np.ndarray:
        positive = expit((matrix @ coef_t + intercept).reshape(-1))
        return np.stack([1 - positive, positive], axis=1)

    return predict_proba


def _text(value: Any) -> str:
    # The same text categories_as_text (pandas astype(str)) gives bools, ints and strings.
    return value if type(value) is str else str(value)


def probe_columns(schema: InputSchema, rows: int = 48, seed: int = 0) -> dict[str, Any]:
    """Rows that exercise every known category, unseen ones and missing values where allowed."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for column in schema.columns:
        if column.role == "numeric":
            values = rng.normal(0.0, 1.0, rows) * 50.0 + 20.0
            if column.dtype == "int64":
                values = np.round(values)
            if column.nullable:
                values[rng.random(rows) < 0.2] = math.nan
            columns[column.name] = values.astype(np.float64)
        else:
            known: list[Any] = list(column.categories) or ["a"]
            if column.dtype == "bool":
                known = [True, False]
            elif column.dtype == "int64":
                known = [int(float(v)) for v in known] or [0]
            pool = known + (["zz-unseen"] if column.dtype == "string" else []) + ([None] if column.nullable else [])
            columns[column.name] = [pool[i] for i in rng.integers(0, len(pool), rows)]
    return columns


def compile_pipeline(pipeline: Any, schema: InputSchema) -> tuple[CompiledPipeline | None, str]:
    """Compile and verify; returns ``(compiled or None, why)`` — None means use the DataFrame path."""
    try:
        compiled = CompiledPipeline(pipeline, schema)
    except NotCompilable as exc:
        return None, f"DataFrame path: {exc}"
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        return None, f"DataFrame path: pipeline could not be compiled ({type(exc).__name__}: {exc})"
    probe = probe_columns(schema)
    rows = len(next(iter(probe.values())))
    try:
        expected = pipeline.predict_proba(frame_from_columns(schema, probe))
        got = compiled.predict_proba(probe, rows)
    except Exception as exc:  # a pipeline we cannot verify is not used
        return None, f"DataFrame path: verification failed ({type(exc).__name__}: {exc})"
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=0.0, atol=_TOLERANCE):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
        return None, f"DataFrame path: compiled predictions differ from the Pipeline by {worst:.3g}"
    return compiled, f"compiled numpy path (verified on {rows} probe rows)"
