"""Input enforcement for the model server, in the spirit of MLflow signatures.

An :class:`InputSchema` is compiled once from ``input_schema.json`` at load time: the
column order, one caster per column and the lookup tables the request decoders need.
Requests then only run the casters. Every client mistake raises kserve's
``InvalidInput`` (HTTP 400, gRPC INVALID_ARGUMENT) with a message naming the column
and the value, never a bare exception that would surface as a 500.

Casting rules (only safe casts):

* ``float64`` columns take JSON numbers (ints widen to floats); ``int64`` columns take
  integers and integral floats (``42.0``); booleans and strings are refused;
* ``bool`` columns take ``true``/``false`` (and the texts ``"true"``/``"false"``);
* ``string`` columns take strings; an unseen category is passed to the model, which
  encodes it as unknown;
* ``null`` (or NaN, or ``""`` for text) only where the training data had missing
  values (``nullable``); BYTES tensors cannot carry nulls, so there ``""`` means missing;
* inside a BYTES tensor every value is text, so numbers are parsed from text there.

The model contract (what enters the ONNX graph) is also made here, by the same code for
the server, training, evaluation and infra-validation (:func:`model_inputs`,
:meth:`InputSchema.model_feeds`): one ``[n, 1]`` tensor per column, named after it;
numeric columns as float32 (NaN where missing, imputed inside the graph); categorical
columns as strings: the value's text (``True``, ``3``, ``rent``) or ``__missing__``.
The text cast and the missing bucket live here rather than in the scikit-learn Pipeline
because neither converts to ONNX, and because this layer already sees every request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tollgate.metrics import UNKNOWN_COLUMN_POLICIES
from tollgate.records import ModelInputs, RecordError

# The category every missing categorical value becomes before the graph (a one-hot column of its own).
MISSING_CATEGORY = "__missing__"
# What each role enters the ONNX graph as.
MODEL_INPUT_TYPES = {"numeric": "float32", "categorical": "string"}
# Open Inference Protocol datatype advertised (and preferred) for each schema dtype.
OIP_DATATYPE = {"float64": "FP64", "int64": "INT64", "bool": "BOOL", "string": "BYTES"}
_NUMERIC_OIP = frozenset({"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
                          "UINT8", "UINT16", "UINT32", "UINT64"})
# Which tensor datatypes may carry each schema dtype (BYTES always may: text is parsed).
ACCEPTED_OIP = {
    "float64": _NUMERIC_OIP | {"BYTES"},
    "int64": _NUMERIC_OIP | {"BYTES"},
    "bool": frozenset({"BOOL", "BYTES"}),
    "string": frozenset({"BYTES"}),
}
_TRUE_TEXT = frozenset({"true", "True", "TRUE"})
_FALSE_TEXT = frozenset({"false", "False", "FALSE"})
_NULL_TEXT = frozenset({"", "nan", "NaN", "null", "None"})


def invalid_input(message: str) -> Exception:
    """kserve's ``InvalidInput`` (HTTP 400, gRPC INVALID_ARGUMENT) carrying ``message``.

    Imported when a request is refused, not with this module: training, evaluation and
    infra-validation use the model contract below, and importing kserve costs each of
    those task processes about a second.
    """
    from kserve.errors import InvalidInput

    return InvalidInput(message)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class ColumnSpec:
    """One model input column, as ``input_schema.json`` describes it."""

    name: str
    role: str
    dtype: str
    nullable: bool

    @property
    def datatype(self) -> str:
        """The OIP tensor datatype clients should send for this column."""
        return OIP_DATATYPE[self.dtype]


class ColumnCaster:
    """Casts one column's values to what the model expects, or raises ``InvalidInput``.

    ``cast(values, text)`` returns a float64 array for numeric columns and a list of
    Python values (``None`` for missing) for categorical ones. ``text=True`` means the
    values come from a BYTES tensor and are strings that may encode numbers.
    """

    def __init__(self, column: ColumnSpec):
        self.column = column
        self.name = column.name
        self.numeric = column.role == "numeric"
        self._cast_value: Callable[[Any, bool], Any] = {
            "float64": self._float, "int64": self._int, "bool": self._bool, "string": self._string,
        }[column.dtype]

    def _refuse(self, value: Any, why: str) -> Exception:
        return invalid_input(f"column '{self.name}' ({self.column.dtype}): value {_show(value)} {why}")

    def _null(self, value: Any) -> Any:
        if not self.column.nullable:
            raise self._refuse(value, "is missing, but this column is not nullable")
        return math.nan if self.numeric else None

    def _float(self, value: Any, text: bool) -> float:
        kind = type(value)
        if kind is float:
            if value != value:
                return value if self.column.nullable else self._null(value)
            return value if math.isfinite(value) else self._not_finite(value)
        if kind is int:
            return float(value)
        if value is None:
            return self._null(value)
        if text and kind is str:
            if value in _NULL_TEXT:
                return self._null(value)
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                return self._not_finite(value) if math.isinf(number) else self._float(number, False)
        raise self._refuse(value, "is not a number (only safe casts are made)")

    def _not_finite(self, value: Any) -> Any:
        raise self._refuse(value, "is not a finite number (infinities and overflowing numbers are refused)")

    def _check_finite(self, array: np.ndarray) -> np.ndarray:
        infinite = np.isinf(array)
        if infinite.any():
            self._not_finite(float(array[infinite.argmax()]))
        return array

    def _int(self, value: Any, text: bool) -> Any:
        kind = type(value)
        if kind is int:
            return value
        if text and kind is str and value not in _NULL_TEXT:
            try:
                number = float(value)
            except ValueError:
                raise self._refuse(value, "is not an integer") from None
            if math.isinf(number):
                return self._not_finite(value)
            value, kind = number, float
        if kind is float:
            if value != value:
                return self._null(value)
            if math.isinf(value):
                return self._not_finite(value)
            if value.is_integer():
                return int(value)
            raise self._refuse(value, "is not an integer (casting it would lose the fraction)")
        if value is None or (text and kind is str):
            return self._null(value)
        raise self._refuse(value, "is not an integer (only safe casts are made)")

    def _bool(self, value: Any, text: bool) -> Any:
        if value is True or value is False:
            return value
        if type(value) is np.bool_:
            return bool(value)
        if type(value) is str:
            if value in _TRUE_TEXT:
                return True
            if value in _FALSE_TEXT:
                return False
            if text and value in _NULL_TEXT:
                return self._null(value)
        if value is None:
            return self._null(value)
        raise self._refuse(value, "is not a boolean (send true or false)")

    def _string(self, value: Any, text: bool) -> Any:
        if type(value) is str and value:
            return value
        if value is None or value == "":
            return self._null(value)
        raise self._refuse(value, "is not a string")

    def cast(self, values: Sequence[Any], text: bool = False) -> Any:
        """Cast a whole column (one value per row)."""
        cast_value = self._cast_value
        if self.numeric:
            kinds = set(map(type, values))
            # The common case (a clean numeric column) skips the per-value Python calls.
            if kinds <= {float, int} and (self.column.dtype == "float64" or kinds == {int}):
                array = self._check_finite(np.asarray(values, dtype=np.float64))
                if not self.column.nullable and np.isnan(array).any():
                    cast_value(math.nan, text)
                return array
            return np.asarray([cast_value(v, text) for v in values], dtype=np.float64)
        if self.column.dtype == "string" and set(map(type, values)) == {str} and "" not in values:
            return list(values)
        return [cast_value(v, text) for v in values]

    def cast_array(self, array: np.ndarray) -> Any:
        """Cast a typed numpy tensor (gRPC raw contents or a numeric JSON tensor)."""
        kind = array.dtype.kind
        if kind == "O" or kind in "SU":
            return self.cast([_as_text(v, f"column '{self.column.name}'") for v in array.tolist()], text=True)
        if self.numeric:
            if kind == "b":
                raise self._refuse(bool(array[0]), "is not a number (BOOL tensor for a numeric column)")
            values = self._check_finite(array.astype(np.float64))
            if self.column.dtype == "int64" and kind == "f":
                finite = values[~np.isnan(values)]
                fractional = finite[finite != np.floor(finite)]
                if fractional.size:
                    raise self._refuse(float(fractional[0]), "is not an integer (casting it would lose the fraction)")
            if not self.column.nullable and np.isnan(values).any():
                self._null(math.nan)
            return values
        return self.cast(array.tolist())


def _as_text(value: Any, where: str) -> Any:
    """A BYTES element as text; ``where`` names the input or column in the refusal."""
    if type(value) is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_input(f"{where}: value {_show(value)} is not valid UTF-8 text") from None
    return value


class InputSchema:
    """The compiled input schema of one model version."""

    def __init__(self, columns: list[ColumnSpec], unknown_columns: str = "reject"):
        if not columns:
            raise ValueError("input schema lists no columns")
        if unknown_columns not in UNKNOWN_COLUMN_POLICIES:
            raise ValueError(f"unknown_columns must be one of {list(UNKNOWN_COLUMN_POLICIES)}, got {unknown_columns!r}")
        self.columns = columns
        self.names = [c.name for c in columns]
        self.width = len(columns)
        self.casters = [ColumnCaster(c) for c in columns]
        self.reject_unknown = unknown_columns == "reject"
        self._name_set = frozenset(self.names)

    @classmethod
    def from_dict(cls, schema: dict[str, Any], unknown_columns: str = "reject") -> InputSchema:
        """Build from the parsed ``input_schema.json``."""
        try:
            # A column's training categories are not enforced (an unseen one goes to the model,
            # which encodes it as unknown), so they are not used here.
            columns = [ColumnSpec(name=c.name, role=c.role, dtype=c.dtype, nullable=bool(c.nullable))
                       for c in ModelInputs.from_dict(schema).columns]
        except (RecordError, TypeError) as exc:
            raise ValueError(f"input_schema.json is malformed: {exc}") from exc
        bad = sorted({c.dtype for c in columns} - set(OIP_DATATYPE))
        if bad:
            raise ValueError(f"input_schema.json uses unsupported dtypes {bad}; known: {sorted(OIP_DATATYPE)}")
        return cls(columns, unknown_columns)

    # -- checks shared by every protocol -------------------------------------------------

    def check_names(self, given: Sequence[str]) -> None:
        """Missing columns are always an error; unknown ones unless configured to be ignored."""
        given_set = set(given)
        if len(given_set) != len(given):
            repeated = sorted({n for n in given if list(given).count(n) > 1})
            raise invalid_input(f"column(s) given more than once: {repeated}")
        missing = [n for n in self.names if n not in given_set]
        if missing:
            raise invalid_input(f"missing column(s) {missing}; the model needs {self.names}")
        if self.reject_unknown and len(given_set) != self.width:
            unknown = sorted(given_set - self._name_set)
            raise invalid_input(f"unknown column(s) {unknown}; the model accepts only {self.names} "
                               "(set serving.unknown_columns: ignore to drop extra columns instead)")

    # -- the model contract: validated columns -> ONNX feeds --------------------------------

    def model_feeds(self, columns: dict[str, Any]) -> dict[str, np.ndarray]:
        """The graph's inputs for validated columns (what :meth:`ColumnCaster.cast` returned)."""
        feeds = {}
        for caster in self.casters:
            values = columns[caster.name]
            if caster.numeric:
                array = values if type(values) is np.ndarray else np.asarray(values, dtype=np.float64)
                feeds[caster.name] = array.astype(np.float32).reshape(-1, 1)
            elif caster.column.dtype == "string" and None not in values:
                # Validated text with nothing missing is already the graph's input (the common case).
                feeds[caster.name] = np.array(values, dtype=object).reshape(-1, 1)
            elif caster.column.dtype == "bool" and None not in values:
                flags = np.array(values, dtype=bool)
                feeds[caster.name] = np.where(flags, "True", "False").astype(object).reshape(-1, 1)
            else:
                feeds[caster.name] = np.array([category_text(v) for v in values], dtype=object).reshape(-1, 1)
        return feeds

    # -- v1: {"instances": [...]} ---------------------------------------------------------

    def columns_from_instances(self, instances: Any) -> dict[str, Any]:
        """Decode v1 ``instances``: a list of objects (column -> value) or of rows in schema order."""
        first = instances[0]
        if type(first) is dict:
            return self._columns_from_records(instances)
        if type(first) is list:
            return self._columns_from_rows(instances, text=False, where="instance")
        raise invalid_input(f"each instance must be an object (column -> value) or a list of {self.width} values "
                           f"in schema order; instance 0 is {type(first).__name__}")

    def _columns_from_records(self, records: list[Any]) -> dict[str, Any]:
        keys = list(records[0])
        self.check_names(keys)
        for index, record in enumerate(records):
            if type(record) is not dict:
                raise invalid_input(f"instance {index} is {type(record).__name__}; mix of objects and rows")
            if len(record) != len(keys) or (index and record.keys() != records[0].keys()):
                self.check_names(list(record))
        try:
            return {c.name: c.cast([r[c.name] for r in records]) for c in self.casters}
        except KeyError as exc:  # pragma: no cover - check_names covers every row above
            raise invalid_input(f"missing column {exc.args[0]!r}") from None

    def _columns_from_rows(self, rows: list[Any], text: bool, where: str) -> dict[str, Any]:
        width = self.width
        for index, row in enumerate(rows):
            if type(row) is not list:
                raise invalid_input(f"{where} {index} is {type(row).__name__}, expected a list of {width} values")
            if len(row) != width:
                raise invalid_input(f"{where} {index} has {len(row)} values; the model needs {width} "
                                   f"in this order: {self.names}")
        transposed = list(zip(*rows, strict=False))  # row lengths are checked before
        return {c.name: c.cast(values, text) for c, values in zip(self.casters, transposed, strict=False)}

    # -- OIP v2: REST and gRPC ------------------------------------------------------------

    def columns_from_tensors(self, inputs: Sequence[Any]) -> dict[str, Any]:
        """Decode v2 inputs: one 1-D tensor per column, or a single 2-D tensor in schema order."""
        if len(inputs) == 1 and inputs[0].name not in self._name_set:
            return self._columns_from_matrix(inputs[0])
        names = [tensor.name for tensor in inputs]
        if not self.reject_unknown:
            inputs = [t for t in inputs if t.name in self._name_set]
        self.check_names(names)
        by_name = {t.name: t for t in inputs}
        rows = None
        columns = {}
        for caster in self.casters:
            tensor = by_name[caster.name]
            shape = _shape(tensor)
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise invalid_input(f"input '{tensor.name}' has shape {shape}; a column input must have shape [n] or [n, 1]")
            if rows is None:
                rows = shape[0]
            elif shape[0] != rows:
                raise invalid_input(f"input '{tensor.name}' has {shape[0]} rows but earlier inputs have {rows}")
            datatype = tensor.datatype
            if datatype not in ACCEPTED_OIP[caster.column.dtype]:
                raise invalid_input(f"input '{tensor.name}' has datatype {datatype}; column '{caster.name}' "
                                   f"({caster.column.dtype}) takes {caster.column.datatype}")
            columns[caster.name] = _cast_tensor(caster, tensor, rows)
        return columns

    def _columns_from_matrix(self, tensor: Any) -> dict[str, Any]:
        shape = _shape(tensor)
        if len(shape) != 2 or shape[1] != self.width:
            raise invalid_input(
                f"input '{tensor.name}' is not a column of this model ({self.names}); a single input must be "
                f"2-D with shape [n, {self.width}] in schema order, got shape {shape}")
        values = _tensor_values(tensor)
        if len(values) == shape[0] and all(type(r) is list for r in values):
            rows = values
        else:
            flat = _flatten(values)
            if len(flat) != shape[0] * shape[1]:
                raise invalid_input(f"input '{tensor.name}' declares shape {shape} but carries {len(flat)} values")
            rows = [flat[i:i + shape[1]] for i in range(0, len(flat), shape[1])]
        text = tensor.datatype == "BYTES"
        if text:
            rows = [[_as_text(v, f"input '{tensor.name}'") for v in row] for row in rows]
        return self._columns_from_rows(rows, text=text, where="row")


def _shape(tensor: Any) -> list[int]:
    shape = list(tensor.shape)
    if not shape or any(type(d) is not int or d < 0 for d in shape):
        raise invalid_input(f"input '{tensor.name}' has an invalid shape {shape}")
    return shape


def _tensor_values(tensor: Any) -> list[Any]:
    raw = getattr(tensor, "_raw_data", None)
    if raw is not None:
        try:
            return tensor.as_numpy().tolist()
        except (ValueError, TypeError) as exc:
            raise invalid_input(f"input '{tensor.name}': raw contents do not match shape {list(tensor.shape)} "
                               f"and datatype {tensor.datatype}: {exc}") from None
    data = tensor.data
    if data is None:
        raise invalid_input(f"input '{tensor.name}' carries no data")
    return list(data)


def _flatten(values: list[Any]) -> list[Any]:
    if values and type(values[0]) is list:
        return [v for row in values for v in (row if type(row) is list else [row])]
    return values


def _cast_tensor(caster: ColumnCaster, tensor: Any, rows: int) -> Any:
    raw = getattr(tensor, "_raw_data", None)
    if raw is not None:
        try:
            array = tensor.as_numpy().reshape(-1)
        except (ValueError, TypeError) as exc:
            raise invalid_input(f"input '{tensor.name}': raw contents do not match shape {list(tensor.shape)} "
                               f"and datatype {tensor.datatype}: {exc}") from None
        if array.shape[0] != rows:
            raise invalid_input(f"input '{tensor.name}' declares {rows} rows but carries {array.shape[0]} values")
        return caster.cast_array(array)
    values = _flatten(_tensor_values(tensor))
    if len(values) != rows:
        raise invalid_input(f"input '{tensor.name}' declares {rows} rows but carries {len(values)} values")
    if tensor.datatype == "BYTES":
        # JSON text is already str; only raw/binary tensors carry bytes that need decoding.
        text = values if bytes not in set(map(type, values)) else [_as_text(v, f"input '{tensor.name}'") for v in values]
        return caster.cast(text, text=True)
    if tensor.datatype == "BOOL" and not caster.numeric:
        return caster.cast(values)
    if tensor.datatype == "BOOL":
        raise invalid_input(f"input '{tensor.name}' is BOOL but column '{caster.name}' is numeric")
    return caster.cast(values)


# -- the model contract for tables (training, evaluation, infra-validation) --------------


def category_text(value: Any) -> str:
    """One categorical value as the graph sees it: its text, or the missing bucket."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_CATEGORY
    return str(value)


def model_inputs(frame: Any, schema: dict[str, Any]) -> Any:
    """The model's input table for a pandas DataFrame: schema columns, numerics as float32,
    categoricals as text with ``__missing__``; exactly what :meth:`InputSchema.model_feeds`
    gives the server for the same values (a test holds the two to that).

    The scikit-learn Pipeline is fitted on this table and the ONNX graph is fed from it.
    """
    import pandas as pd

    data = {}
    for column in ModelInputs.from_dict(schema).columns:
        name = column.name
        series = frame[name]
        if column.role == "numeric":
            # Through float64 first, as the server's casters do, so both round the same way.
            values = pd.to_numeric(series).to_numpy(dtype=np.float64, na_value=np.nan)
            data[name] = values.astype(np.float32)
        else:
            # Vectorised str() per value: the same text category_text gives the server's values.
            data[name] = series.astype(str).where(series.notna(), MISSING_CATEGORY).to_numpy(dtype=object)
    return pd.DataFrame(data, index=frame.index)


def feeds_from_inputs(inputs: Any) -> dict[str, np.ndarray]:
    """ONNX feeds (one ``[n, 1]`` array per column) from a :func:`model_inputs` table."""
    return {name: inputs[name].to_numpy().reshape(-1, 1) for name in inputs.columns}
