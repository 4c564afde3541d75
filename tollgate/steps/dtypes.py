"""The one place that decides what kind of values a column holds.

Preprocess (feature roles and the model's input schema) and validate (the data schema's
``family`` and the ``dtype_change`` check) both ask :func:`column_kind`, so a column is
never numeric to one step and text to another. The kinds:

* ``numeric`` — integer or float dtypes, pandas' nullable ``Int64``/``Float64`` included,
  and object columns whose values are all numbers (``[1, 2, None]`` from JSON or Parquet).
  A feature of this kind is imputed and scaled; it enters the graph as float32.
* ``bool`` — numpy ``bool``, pandas' nullable ``boolean`` (with NA), and object columns
  whose values are all Python/numpy booleans (``[True, False, None]``). Booleans are
  categories to the model (their text ``True``/``False``), but the server accepts JSON
  booleans for them, so they are a kind of their own, not text.
* ``string`` — everything a model can only treat as categories: text (including text that
  looks like numbers, ``"1"``: it stays text, as the README promises), pandas ``category``
  dtype whatever its categories are (whoever built the frame declared it categorical),
  mixed objects, and a column with no values at all (nothing says it is anything else).
* ``datetime`` — datetime64 dtypes (with or without a time zone) and object columns of
  dates or datetimes. Never a feature: it would leak the split's time order.

Text that *spells* booleans or numbers (``"true"``, ``"3.5"``) is not reinterpreted here:
ingest's ``normalize_types`` turns such CSV columns into real booleans and numbers once,
with a note; after that the dtype (or the Python type of the values) decides.

The names match the ``family`` values already stored in every registered
``data_schema.json``, so versions registered before this module compare unchanged.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

ColumnKind = Literal["numeric", "bool", "string", "datetime"]
NUMERIC: ColumnKind = "numeric"
BOOL: ColumnKind = "bool"
STRING: ColumnKind = "string"
DATETIME: ColumnKind = "datetime"

# pandas.api.types.infer_dtype's answers for an object column, by kind (anything else is string).
_INFERRED_KIND: dict[str, ColumnKind] = {
    "boolean": BOOL,
    "integer": NUMERIC, "floating": NUMERIC, "mixed-integer-float": NUMERIC, "decimal": NUMERIC,
    "datetime": DATETIME, "datetime64": DATETIME, "date": DATETIME,
}


def column_kind(series: pd.Series) -> ColumnKind:
    """``numeric``, ``bool``, ``string`` or ``datetime`` for one column (see the module docstring)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return STRING
    if pd.api.types.is_bool_dtype(dtype):
        return BOOL
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return NUMERIC
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return DATETIME
    if pd.api.types.is_object_dtype(dtype):
        # skipna: the kind of the values that are there; an all-missing column infers as "empty" -> string.
        return _INFERRED_KIND.get(pd.api.types.infer_dtype(series, skipna=True), STRING)
    # Strings, complex numbers, timedeltas, periods, intervals: only their text is usable.
    return STRING


def is_integer_valued(series: pd.Series) -> bool:
    """True for a numeric column whose values are integers by type (``int64``, ``Int64``, object ints);
    the input schema then declares it ``int64`` and the server refuses fractions for it."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return False
    if pd.api.types.is_integer_dtype(dtype):
        return True
    return pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(series, skipna=True) == "integer"
