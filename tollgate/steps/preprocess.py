"""Preprocess: split the table, infer feature roles and describe the model's input schema.

The ColumnTransformer built here is *not* fitted in this step: it goes inside each
candidate's Pipeline and is fitted on the training split only; the Pipeline is then
exported to ONNX, so serving runs exactly the transform that training fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tollgate.errors import DataError
from tollgate.records import FeatureSpec, InputColumn, ModelInputs
from tollgate.steps.dtypes import BOOL, DATETIME, NUMERIC, column_kind, is_integer_valued
from tollgate.steps.labels import (
    DEFAULT_DECISION_THRESHOLD,
    MULTICLASS,
    class_order,
    encode_labels,
    positive_mask,
    resolve_task,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from sklearn.compose import ColumnTransformer

    from tollgate.settings import PreprocessSettings

# scikit-learn is imported by the function that builds the transformer (train's): the preprocess
# task itself, and infra-validate, which only reads a FeatureSpec, need none of it.

LABEL = "__label__"  # the label column of the split datasets: 0/1 (binary) or the class position (multiclass)


SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class Splits:
    """Train, validation and test frames, each with the model columns and ``__label__``."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


@dataclass
class SplitPlan:
    """Which rows and columns of the table each split takes, and the label column they get.

    A plan is made once (:func:`plan_split`) and taken from the table in whichever form the
    caller holds it: :meth:`take` for a DataFrame (training in memory), :meth:`take_table` for
    the Arrow table a task read (the preprocess task writes its splits straight from it). Both
    give the same split: :func:`tollgate.artifacts.read_frame` reads back what :meth:`take`
    returns.
    """

    rows: dict[str, np.ndarray]  # ascending positions in the table, per split name
    columns: dict[str, list[str]]  # the table's columns each split keeps, in order (then LABEL)
    label: np.ndarray  # per table row: 0/1 (binary) or the class position (multiclass), int64

    def take(self, frame: pd.DataFrame) -> Splits:
        """The three splits of ``frame`` (the table the plan was made on) as DataFrames."""
        return Splits(**{name: _take_split(frame, self.rows[name], self.columns[name], self.label)
                         for name in SPLIT_NAMES})

    def take_table(self, table: pa.Table, name: str) -> pa.Table:
        """Split ``name`` of ``table`` (the plan's table, as Arrow): its rows and columns, then LABEL.

        Arrow takes the rows in C++ from the memory-mapped file, and the table keeps its
        pandas metadata (dtypes as the frame had them). At 1,000,000 rows this writes the
        three splits in about 0.4 s, where taking them in pandas and converting each back to
        Arrow takes 1.3 s (docs/benchmarks.md).
        """
        import pyarrow as pa

        rows = self.rows[name]
        return table.select(self.columns[name]).take(pa.array(rows)).append_column(LABEL, pa.array(self.label[rows]))

    def kfp_metadata(self, name: str) -> dict[str, Any]:
        """Split ``name``'s dataset metadata in KFP: its row count."""
        return {"rows": len(self.rows[name])}


def infer_feature_roles(frame: pd.DataFrame, exclude: list[str], numeric: list[str] | None = None,
                        categorical: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Split columns into numeric and categorical roles; configured lists win over inference.

    The kind of each column is :func:`tollgate.steps.dtypes.column_kind`'s: ``numeric``
    columns are numeric, ``bool`` and ``string`` ones categorical, and ``datetime`` columns
    are never features (they would leak the split's time order).
    """
    candidates = [c for c in frame.columns if c not in set(exclude)]
    unknown = sorted((set(numeric or []) | set(categorical or [])) - set(frame.columns))
    if unknown:
        raise DataError(f"features.numeric/categorical name columns that are not in the data: {unknown}")
    overlap = sorted(set(numeric or []) & set(categorical or []))
    if overlap:
        raise DataError(f"columns are configured as both numeric and categorical: {overlap}")
    inferred_numeric, inferred_categorical = [], []
    for column in candidates:
        kind = column_kind(frame[column])
        if kind == NUMERIC:
            inferred_numeric.append(column)
        elif kind != DATETIME:
            inferred_categorical.append(column)
    if numeric is not None:
        inferred_numeric = list(numeric)
        inferred_categorical = [c for c in inferred_categorical if c not in numeric]
    if categorical is not None:
        inferred_categorical = list(categorical)
        inferred_numeric = [c for c in inferred_numeric if c not in categorical]
    if not inferred_numeric and not inferred_categorical:
        raise DataError("no usable feature columns (all excluded or datetimes)")
    return inferred_numeric, inferred_categorical


def input_columns(frame: pd.DataFrame, numeric: list[str], categorical: list[str],
                  max_categories: int = 50) -> list[InputColumn]:
    """Describe the model's inputs: what the server enforces and the validator compares against.

    ``dtype`` is one of ``float64``, ``int64``, ``bool`` or ``string`` (see
    :func:`schema_dtype`). Categorical columns list the categories seen in training (most
    frequent first, capped).
    """
    columns = []
    for name in numeric + categorical:
        series = frame[name]
        categories = None
        if name in categorical:
            categories = list(series.dropna().astype(str).value_counts().index[: max_categories * 4])
        columns.append(InputColumn(name=name, role="numeric" if name in numeric else "categorical",
                                   dtype=schema_dtype(series), nullable=bool(series.isna().any()),
                                   categories=categories))
    return columns


def schema_dtype(series: pd.Series) -> str:
    """The input schema's ``dtype`` of a column, from its :func:`~tollgate.steps.dtypes.column_kind`:
    ``bool`` and ``string`` as they are, ``numeric`` as ``int64`` or ``float64``. Integers
    stored as floats only because of NaNs are still floats to the model; a datetime (only
    ever a feature by explicit configuration) is sent as text."""
    kind = column_kind(series)
    if kind == NUMERIC:
        return "int64" if is_integer_valued(series) else "float64"
    return "bool" if kind == BOOL else "string"


def build_feature_spec(frame: pd.DataFrame, target: str, positive_label: Any, drop: list[str],
                       date_column: str | None, numeric: list[str] | None = None,
                       categorical: list[str] | None = None, max_categories: int = 50,
                       task: str = "auto", decision_threshold: float = DEFAULT_DECISION_THRESHOLD) -> FeatureSpec:
    """Infer roles and the input schema from the ingested table.

    ``task`` is ``data.task``; with ``auto`` the number of label values decides. A
    multiclass spec records its class order, and so does its input schema. A binary spec's
    input schema records ``decision_threshold`` (the config key): evaluation, fairness,
    infra-validation and the server that serves the version all decide with it.
    """
    exclude = [target, *drop] + ([date_column] if date_column else [])
    numeric_cols, categorical_cols = infer_feature_roles(frame, exclude, numeric, categorical)
    labels = frame[target]
    classes = class_order(labels)
    if resolve_task(task, len(classes)) == MULTICLASS:
        schema = ModelInputs(input_columns(frame, numeric_cols, categorical_cols, max_categories), task=MULTICLASS,
                             classes=classes).to_dict()
        return FeatureSpec(target=target, positive_label=None, negative_label=None, numeric=numeric_cols,
                           categorical=categorical_cols, max_categories=max_categories, schema=schema,
                           task=MULTICLASS, classes=classes)
    positives = positive_mask(labels, positive_label)
    positive_value = labels[positives].iloc[0]
    negative_value = labels[~positives].iloc[0]
    schema = ModelInputs(input_columns(frame, numeric_cols, categorical_cols, max_categories),
                         decision_threshold=float(decision_threshold)).to_dict()
    return FeatureSpec(
        target=target,
        positive_label=_plain(positive_value),
        negative_label=_plain(negative_value),
        numeric=numeric_cols,
        categorical=categorical_cols,
        max_categories=max_categories,
        schema=schema,
    )


def _plain(value: Any) -> Any:
    # numpy scalars are not JSON-serialisable; labels travel in JSON artifacts.
    return value.item() if isinstance(value, np.generic) else value


def split_dataset(frame: pd.DataFrame, spec: FeatureSpec, test_size: float, validation_size: float,
                  seed: int, extra_columns: list[str] | tuple = (), test_only_columns: list[str] | tuple = ()
                  ) -> Splits:
    """Stratified, seeded train/validation/test split of the model columns plus a 0/1 label
    (:func:`plan_split`, taken from ``frame``)."""
    return plan_split(frame, spec, test_size, validation_size, seed, extra_columns, test_only_columns).take(frame)


def plan_split(frame: pd.DataFrame, spec: FeatureSpec, test_size: float, validation_size: float,
               seed: int, extra_columns: list[str] | tuple = (), test_only_columns: list[str] | tuple = ()
               ) -> SplitPlan:
    """The plan of a stratified, seeded train/validation/test split of the model columns plus a
    0/1 label (the class position, multiclass).

    ``extra_columns`` ride along in every split after the model columns even when the model
    does not use them (models select ``spec.columns``): in-memory callers put the sensitive
    attributes there for a fairness report on any split.
    ``test_only_columns`` ride along in the test split only: the champion is scored there with
    the columns *it* was trained on, which this run may have dropped (``data.drop``).
    """
    missing = [c for c in extra_columns if c not in frame.columns]
    if missing:
        raise DataError(f"columns {missing} asked for beside the model columns are not in the data")
    extras = [c for c in dict.fromkeys(extra_columns) if c not in spec.columns and c != LABEL]
    test_only = [c for c in dict.fromkeys(test_only_columns)
                 if c in frame.columns and c not in spec.columns and c not in extras and c not in (LABEL, spec.target)]
    model_columns = spec.columns + extras
    absent = [c for c in model_columns if c not in frame.columns]
    if absent:
        raise DataError(f"columns {absent} are not in the data")
    if spec.multiclass:
        label = encode_labels(frame[spec.target], spec.classes)
        counts = np.bincount(label, minlength=len(spec.classes))
        too_rare = [(spec.classes[i], int(n)) for i, n in enumerate(counts) if n < 3]
        if too_rare:
            listed = ", ".join(f"{c!r} ({n} rows)" for c, n in too_rare)
            raise DataError(f"class(es) {listed} have fewer than 3 rows: every class needs a row in train, validation "
                            "and test; add rows of them, merge them into another class, or drop them")
    else:
        label = positive_mask(frame[spec.target], spec.positive_label).to_numpy(dtype=np.int64)
        counts = np.bincount(label, minlength=2)
        if counts.min() < 3:
            raise DataError(f"the rarer class has only {int(counts.min())} rows; at least 3 are needed to split into "
                            "train/validation/test")
    rows = _three_way_rows(label, test_size, validation_size, seed)
    if spec.multiclass:
        for name, part_rows in rows.items():
            absent_classes = np.flatnonzero(np.bincount(label[part_rows], minlength=len(spec.classes)) == 0)
            if len(absent_classes):
                listed = ", ".join(f"{spec.classes[i]!r} ({int(counts[i])} rows)" for i in absent_classes)
                raise DataError(f"stratified splitting left class(es) {listed} out of the {name} split: they are too "
                                f"rare for split.test_size {test_size:g} / split.validation_size {validation_size:g}; "
                                "add rows of them, enlarge the split sizes, or merge them into another class")
    return SplitPlan(rows=rows, columns={"train": model_columns, "validation": model_columns,
                                         "test": model_columns + test_only}, label=label)


def _take_split(frame: pd.DataFrame, rows: np.ndarray, columns: list[str], label: np.ndarray) -> pd.DataFrame:
    """``columns`` of ``frame`` at the positions ``rows``, then ``LABEL``; indexed 0..n-1.

    One copy of the rows it keeps: at 1,000,000 rows, selecting columns, splitting twice,
    dropping and re-indexing (a copy each) took 1.3-1.9 s, most of it faulting in fresh
    memory, against 0.2 s for this (docs/benchmarks.md).
    """
    part = frame.iloc[rows, frame.columns.get_indexer(columns)]  # plan_split checked that every column is there
    part.index = pd.RangeIndex(len(part))
    part.insert(len(columns), LABEL, label[rows])
    return part


def stratified_indices(labels: np.ndarray, holdout: float, seed: int, keep: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(kept, held_out)`` of a seeded split that holds out ``ceil(holdout * n)``
    rows, each class in proportion: its exact share, rounded to a neighbouring whole number
    (largest remainders first; ties go to the class listed first). Two bounds come first: a
    class with at least ``keep + 1`` rows has at least one row held out (while the held-out
    total allows one row per such class) and keeps at least ``keep``; the rows a bound adds
    or removes are made up on the other classes (if they cannot be, fewer rows are held
    out). Rows are drawn at random within their class; each part lists its positions in
    ascending order, so a split keeps the table's row order.

    Our own rather than scikit-learn's ``train_test_split``, for two reasons: it is the
    preprocess task's only use of scikit-learn, whose import costs that task about 0.8 s per
    run (docs/benchmarks.md); and scikit-learn may leave a rare class out of a split that
    could have held one of its rows, which a multiclass run must refuse.
    """
    rows = len(labels)
    if not rows:
        return np.arange(0), np.arange(0)
    # The tolerance keeps float noise (0.7 * 1000 = 700.0000000000001) from adding a row.
    held_out = min(rows, math.ceil(holdout * rows - 1e-9))
    if labels.dtype.kind in "iu" and 0 <= labels.min() and labels.max() <= rows:
        # Class positions (LABEL): counting is enough; np.unique's sort costs 0.17 s per 1,000,000 rows.
        # An absent position counts 0 rows and takes none.
        codes, counts = labels, np.bincount(labels)
    else:
        _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = counts * (held_out / rows)
    low = (counts > keep).astype(np.int64)
    if low.sum() > held_out:  # too few held-out rows for one of every class: no minimum (the caller says so)
        low[:] = 0
    high = np.maximum(counts - keep, low)
    take = np.clip(np.floor(share).astype(np.int64), low, high)
    # Settle the total on the classes whose count is furthest from their share, one row each per
    # round (one round unless a bound was hit), never past a bound.
    while (gap := held_out - int(take.sum())) != 0:
        step = 1 if gap > 0 else -1
        movable = np.flatnonzero(take < high if step > 0 else take > low)
        if not len(movable):  # every class keeps its `keep` rows: fewer rows can be held out
            break
        furthest = movable[np.argsort(step * (take[movable] - share[movable]), kind="stable")]
        take[furthest[:abs(gap)]] += step
    # One permutation of all rows, grouped by class (a stable sort keeps each class's random order).
    shuffled = np.random.default_rng(seed).permutation(rows)
    grouped = shuffled[np.argsort(codes[shuffled], kind="stable")]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    chosen = np.zeros(rows, dtype=bool)
    for start, count in zip(starts, take, strict=True):
        chosen[grouped[start:start + count]] = True
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def _three_way_rows(label: np.ndarray, test_size: float, validation_size: float, seed: int
                    ) -> dict[str, np.ndarray]:
    """Row positions of the ``train``, ``validation`` and ``test`` splits, stratified on ``label``:
    the test rows first, then the validation rows out of the rest (``validation_size`` stays a
    fraction of the whole table). Each split's positions are ascending."""
    # A class with 3 rows or more reaches every split: test keeps 2 in the rest, validation 1 in train.
    rest, test = stratified_indices(label, test_size, seed, keep=2)
    relative_validation = validation_size / (1.0 - test_size)
    train, validation = stratified_indices(label[rest], relative_validation, seed + 1, keep=1)
    return {"train": rest[train], "validation": rest[validation], "test": test}


def build_preprocessor(spec: FeatureSpec, scale: bool = True) -> ColumnTransformer:
    """Impute and scale numerics; one-hot encode categoricals. Every step converts to ONNX.

    The input is :func:`tollgate.serving.schema.model_inputs` (numerics float32,
    categoricals text with a ``__missing__`` bucket), the table the server also builds
    before the graph. Each categorical column encodes its ``max_categories`` most frequent
    training categories (plus ``__missing__`` where the column had gaps); any other
    category, rare or unseen at serving time, encodes as all zeros. (scikit-learn's
    "infrequent" grouping and missing-value indicators do not convert to ONNX.)
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    transformers = []
    if spec.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), spec.numeric))
    if spec.categorical:
        categories = [_encoded_categories(spec, name) for name in spec.categorical]
        transformers.append(("categorical", OneHotEncoder(categories=categories, handle_unknown="ignore",
                                                          sparse_output=False), spec.categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def _encoded_categories(spec: FeatureSpec, name: str) -> list[str]:
    from tollgate.serving.schema import MISSING_CATEGORY

    column = spec.inputs.column(name)
    categories = [str(v) for v in column.categories or []][: spec.max_categories]
    if (column.nullable or not categories) and MISSING_CATEGORY not in categories:
        categories.append(MISSING_CATEGORY)
    return categories


def run_preprocess(frame: pd.DataFrame, settings: PreprocessSettings) -> tuple[FeatureSpec, SplitPlan]:
    """Preprocess as the DAG runs it: the feature spec and the plan of the three splits
    (:meth:`SplitPlan.take` gives them as DataFrames, :meth:`SplitPlan.take_table` as Arrow).

    Identifier-like columns (validate's ``identifier_column`` anomalies, found by the same
    function) are left out of the features while ``data.drop_identifiers`` is on. The test
    split keeps every raw column, so the champion can be scored with its own columns even
    when this run drops one; train and validation carry only the model's columns.
    """
    from tollgate.steps.validate import identifier_columns

    ignored = [settings.target, *settings.drop] + ([settings.date_column] if settings.date_column else [])
    drop = list(settings.drop) + (list(identifier_columns(frame, ignored)) if settings.drop_identifiers else [])
    features = settings.features
    spec = build_feature_spec(frame, settings.target, settings.positive_label, drop, settings.date_column,
                              features.numeric, features.categorical, features.max_categories, task=settings.task,
                              decision_threshold=settings.decision_threshold)
    split = settings.split
    # Every raw column rides in the test split: evaluate measures fairness there (validate checked that
    # the sensitive columns exist) and scores the champion with the columns it was trained on.
    plan = plan_split(frame, spec, split.test_size, split.validation_size, split.seed,
                      test_only_columns=list(frame.columns))
    return spec, plan
