"""Typed records that cross step boundaries: what one DAG step writes and the next reads.

Every record is a dataclass with ``to_dict``/``from_dict`` and ``to_json``/``from_json``;
producers and consumers both go through them, so no step reads another's output by
string key. On disk each record is JSON tagged with its kind and format version::

    {"record": "evaluation", "record_version": 1, ...}

A reader accepts every version up to its own: version 0 is the untagged JSON Tollgate
wrote before records were versioned (still found in old run directories and in the
registry), and is upgraded on read. A record written by a *newer* Tollgate is refused
with a message saying so, rather than misread. Keys a reader does not know (a newer Tollgate
added a field without a new format) are kept in the record's ``extra`` and written back, so
nothing is lost when an older step passes a newer record on; inside a record's lists (rules,
anomalies, drift measures, leaderboard entries) and nested values (curves, per-class metrics,
importance, profiles, a version's features) such keys are ignored. The one exception is
the feature spec, which decides what the model reads: an unknown field there is refused.

Nested values are typed too (:class:`RocCurve`, :class:`ClassMetrics`, :class:`ServedFeatures`,
...), and each is written with exactly the keys its JSON object always had: files on disk, and
the registry's ``metadata.json`` read by deployed model servers, do not change with the types.
A key an older file lacks reads as its field's default where the field has one, and is written
back with it, as a missing top-level field is; a missing required key, or a value of the wrong
shape, makes the record unreadable: a :class:`RecordError` naming it, never a traceback.

This module imports only the standard library: the select, gate and register tasks read
these records without paying for pandas or scikit-learn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, TypeVar

from tollgate.errors import TollgateError

KIND_KEY = "record"
VERSION_KEY = "record_version"
BINARY = "binary"
MULTICLASS = "multiclass"
# A binary model's decision threshold is recorded in its input schema under this key (see
# tollgate.steps.labels); a schema without it (a version registered before) decides at the default.
DECISION_THRESHOLD_KEY = "decision_threshold"
DEFAULT_DECISION_THRESHOLD = 0.5

R = TypeVar("R", bound="_Record")
N = TypeVar("N", bound="_Nested")
T = TypeVar("T")


def decision_threshold(schema: dict[str, Any] | None) -> float:
    """The binary decision threshold an input schema records (``DEFAULT_DECISION_THRESHOLD`` when absent)."""
    value = (schema or {}).get(DECISION_THRESHOLD_KEY)
    return DEFAULT_DECISION_THRESHOLD if value is None else float(value)


class RecordError(TollgateError, ValueError):
    """A record that cannot be read: not JSON, another kind, or written by a newer Tollgate."""


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays (``item``/``tolist``) and anything else (``str``)."""
    for method in ("item", "tolist"):
        if hasattr(value, method):
            return getattr(value, method)()
    return str(value)


def field_values(kind: type, values: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the dataclass ``kind`` from ``values``: its fields, and when it has an
    ``extra`` field, every other key in ``extra`` (nothing is dropped); without one, others are ignored."""
    names = {f.name for f in fields(kind)} - {"extra"}
    known = {k: v for k, v in values.items() if k in names}
    if "extra" in {f.name for f in fields(kind)}:
        known["extra"] = {k: v for k, v in values.items() if k not in names}
    return known


def nested(kind: type[T], value: dict[str, Any]) -> T:
    """An entry of a record's list (a rule, an anomaly, ...) from its JSON object; keys a newer
    Tollgate added to it are ignored, where passing them to the constructor would fail."""
    return kind(**field_values(kind, value))


def _json_value(value: Any) -> Any:
    """A field's value as JSON-ready data: a typed value through its own ``to_dict`` (which knows its
    keys on disk), lists and dicts entry by entry, any other dataclass field by field."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


def fields_with_extra(value: Any, skip_none: bool = False) -> dict[str, Any]:
    """A dataclass's fields as a dict with its ``extra`` keys merged back in, so what a reader did not
    know is written back as read (``skip_none``: fields that do not apply are left out)."""
    payload = {f.name: _json_value(getattr(value, f.name)) for f in fields(value)}
    extra = payload.pop("extra", None) or {}
    if skip_none:
        payload = {k: v for k, v in payload.items() if v is not None}
    return {**payload, **extra}


def _read_fields(kind: type, value: dict[str, Any], readers: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """Keyword arguments for the dataclass ``kind`` from its JSON object ``value`` (as
    :func:`field_values`), with each field named in ``readers`` read into its type. A null reads as
    None where the field's default is None, and as a fresh default (an empty list, an empty check)
    where the field is never None."""
    factories = {f.name: f.default_factory for f in fields(kind) if f.default_factory is not MISSING}
    read = {}
    for name, item in field_values(kind, value).items():
        if item is None and name in factories:
            read[name] = factories[name]()
        elif name in readers and item is not None:
            read[name] = readers[name](item)
        else:
            read[name] = item
    return read


def _each(read: Callable[[Any], T]) -> Callable[[list[Any]], list[T]]:
    """A reader of a JSON list whose entries ``read`` reads (for :func:`_read_fields`)."""
    return lambda values: [read(value) for value in values]


class _Nested:
    """A typed value inside a record (a curve, one class's metrics, a version's features): read from
    its JSON object with the keys a newer Tollgate added ignored (:func:`nested`), written with every
    field (a key an older file lacked is written with its default). Types whose JSON differs from
    their fields override both."""

    @classmethod
    def from_dict(cls: type[N], value: dict[str, Any]) -> N:
        return nested(cls, value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass


@contextmanager
def reading(what: str) -> Iterator[None]:
    """Turn what a reader raises on a malformed JSON value (a missing key, a value of the wrong shape)
    into one :class:`RecordError` naming ``what``, so a command prints one line, not a traceback."""
    try:
        yield
    except RecordError:
        raise
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise RecordError(f"{what} is malformed: {detail}") from None


class _Record:
    """``to_json``/``from_json`` and the kind/version envelope shared by every record."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1

    def _payload(self) -> dict[str, Any]:
        return fields_with_extra(self)

    def to_dict(self, tagged: bool = True) -> dict[str, Any]:
        """The record as a JSON-ready dict, tagged with its kind and version (``tagged=False``:
        the fields alone, for output whose shape users already read, such as ``run --json``)."""
        return {KIND_KEY: self.KIND, VERSION_KEY: self.VERSION, **self._payload()} if tagged else self._payload()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_plain)

    @classmethod
    def _open(cls, value: Any) -> tuple[int, dict[str, Any]]:
        """Check the envelope; return the version and the payload without it."""
        if not isinstance(value, dict):
            raise RecordError(f"a {cls.KIND} record must be a JSON object, not {type(value).__name__}")
        kind = value.get(KIND_KEY, cls.KIND)
        if kind != cls.KIND:
            raise RecordError(f"expected a {cls.KIND} record, found a {kind} record")
        version = value.get(VERSION_KEY, 0)
        if not isinstance(version, int) or version < 0:
            raise RecordError(f"{cls.KIND} record: {VERSION_KEY} must be a whole number, not {version!r}")
        if version > cls.VERSION:
            raise RecordError(f"this {cls.KIND} record is format {version}, written by a newer Tollgate; this one "
                              f"reads up to format {cls.VERSION}: upgrade tollgate to read it")
        return version, {k: v for k, v in value.items() if k not in (KIND_KEY, VERSION_KEY)}

    @classmethod
    def from_dict(cls: type[R], value: Any) -> R:
        """Read the record from its JSON object; anything malformed inside it (a missing key, a value
        of the wrong shape) is a :class:`RecordError` naming the record, not a traceback."""
        version, payload = cls._open(value)
        with reading(f"{cls.KIND} record"):
            return cls._from_payload(cls._upgrade(version, payload))

    @classmethod
    def _upgrade(cls, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Turn an older format's payload into the current one (identity unless a record says otherwise)."""
        return payload

    @classmethod
    def _from_payload(cls: type[R], payload: dict[str, Any]) -> R:
        return cls(**field_values(cls, payload))

    @classmethod
    def from_json(cls: type[R], text: str | bytes) -> R:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"a {cls.KIND} record is not valid JSON: {exc}") from None
        return cls.from_dict(value)


# --- preprocess -> train, evaluate, infra-validate, register -----------------------------------------------------

@dataclass
class FeatureSpec(_Record):
    """Which columns feed the model, their roles, the label mapping and the model's input schema."""

    KIND: ClassVar[str] = "feature_spec"

    target: str
    positive_label: Any
    negative_label: Any
    numeric: list[str]
    categorical: list[str]
    max_categories: int = 50
    schema: dict[str, Any] = field(default_factory=dict)
    # "binary" or "multiclass"; a multiclass model's classes in probability-column order.
    task: str = BINARY
    classes: list[Any] = field(default_factory=list)

    @property
    def multiclass(self) -> bool:
        return self.task == MULTICLASS

    @property
    def class_labels(self) -> list[Any]:
        """The label value of each probability column: ``[negative, positive]`` or the classes in order."""
        return list(self.classes) if self.multiclass else [self.negative_label, self.positive_label]

    @property
    def decision_threshold(self) -> float:
        """A binary model's decision threshold, as its input schema records it (0.5 when it records none)."""
        return decision_threshold(self.schema)

    @property
    def inputs(self) -> ModelInputs:
        """The input schema, typed (``schema`` is its JSON object, written as it is)."""
        return ModelInputs.from_dict(self.schema)

    @property
    def columns(self) -> list[str]:
        """Model input columns in schema order."""
        return self.numeric + self.categorical

    def served_features(self) -> ServedFeatures:
        """What a version's ``metadata.json`` records of its features (``VersionMetadata.features``)."""
        if self.multiclass:
            return ServedFeatures(self.numeric, self.categorical, self.target, self.positive_label,
                                  self.negative_label, task=MULTICLASS, classes=self.classes)
        return ServedFeatures(self.numeric, self.categorical, self.target, self.positive_label, self.negative_label)

    def kfp_metadata(self) -> dict[str, Any]:
        """The features artifact's metadata in KFP (preprocess): how many columns of each role, and the task."""
        return {"numeric": len(self.numeric), "categorical": len(self.categorical), "task": self.task}

    def _payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> FeatureSpec:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - names)
        if unknown:  # a spec decides what the model reads: never drop a field silently
            raise RecordError(f"feature_spec record has fields this Tollgate does not know: {unknown}")
        return cls(**payload)


@dataclass(frozen=True)
class ServedFeatures(_Nested):
    """A version's features as its ``metadata.json`` records them (``features``): the columns by role,
    the target and its label values, and a multiclass model's class order (its probability columns'
    order, fixed at training). The model server answers a binary model's negative and positive
    labels from here; a multiclass model's class order it reads from the input schema, which the
    graph's probability columns follow. Keys a file lacks read as empty (a hand-made file)."""

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    target: str | None = None
    positive_label: Any = None       # None for a multiclass model
    negative_label: Any = None
    task: str | None = None          # "multiclass", or None: binary, and no task or classes on disk
    classes: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        if self.task is None:  # a binary version's features never had these keys
            del value["task"], value["classes"]
        return value


# --- the model's input contract: input_schema.json (preprocess -> train, evaluate, infra-validate, register, serving) ---

@dataclass
class InputColumn:
    """One input of the model, in model order."""

    name: str
    role: str                              # "numeric" or "categorical"
    dtype: str                             # "float64", "int64", "bool" or "string"
    nullable: bool = False
    categories: list[str] | None = None    # a categorical column's training categories, most frequent first

    def to_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = {"name": self.name, "role": self.role, "dtype": self.dtype, "nullable": self.nullable}
        if self.categories is not None:
            value["categories"] = self.categories
        return value


@dataclass
class ModelInputs:
    """The model's input contract, written as a version's ``input_schema.json``: its columns in
    model order (what the server enforces and the graph takes), a binary model's decision
    threshold, and a multiclass model's task and class order (its probability columns' order).

    The file is the served contract, so it is written exactly as it always was (no record
    envelope): :meth:`to_dict` gives the same JSON object :meth:`from_dict` read, unknown top-level
    keys included (unknown keys inside a column are ignored, as in every record's entries).
    """

    columns: list[InputColumn]
    decision_threshold: float | None = None   # binary; absent in versions registered before it existed
    task: str | None = None                   # "multiclass", or None (binary)
    classes: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def multiclass(self) -> bool:
        return self.task == MULTICLASS

    def column(self, name: str) -> InputColumn:
        return next(c for c in self.columns if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = {"columns": [c.to_dict() for c in self.columns]}
        if self.task is not None:
            value.update(task=self.task, classes=self.classes)
        if self.decision_threshold is not None:
            value[DECISION_THRESHOLD_KEY] = self.decision_threshold
        return {**value, **self.extra}

    @classmethod
    def from_dict(cls, value: Any) -> ModelInputs:
        """Read a parsed ``input_schema.json``; :class:`RecordError` says what is malformed."""
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list):
            raise RecordError(f"an input schema must be a JSON object with a 'columns' list, not {_brief(value)}")
        columns = []
        for index, column in enumerate(value["columns"]):
            missing = [k for k in ("name", "role", "dtype") if not isinstance(column, dict) or k not in column]
            if missing:
                raise RecordError(f"input schema column {index} lacks {', '.join(missing)}")
            columns.append(nested(InputColumn, column))
        known = field_values(cls, value)
        return cls(columns=columns, decision_threshold=known.get("decision_threshold"), task=known.get("task"),
                   classes=known.get("classes"), extra=known["extra"])


def _brief(value: Any) -> str:
    return f"a JSON {type(value).__name__}" if not isinstance(value, dict) else "an object without a 'columns' list"


# --- train -> select -> evaluate ------------------------------------------------------------------------------------

CANDIDATE_FILE = "candidate.json"  # inside each trained candidate's model directory


@dataclass(frozen=True)
class ProbabilityAgreement(_Nested):
    """How far the served ONNX graph's probabilities are from the scikit-learn Pipeline's on the same
    rows, and how many rows change class between them (``tollgate.steps.export.probability_agreement``)."""

    rows: int
    max_abs_difference: float
    class_flips: int


@dataclass(frozen=True)
class OnnxExportCheck(_Nested):
    """What train's export check measured: the graph against the Pipeline on the validation rows
    (None: not measured, an empty object on disk)."""

    validation: ProbabilityAgreement | None = None

    def to_dict(self) -> dict[str, Any]:
        return {} if self.validation is None else {"validation": self.validation.to_dict()}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> OnnxExportCheck:
        validation = value.get("validation")
        return cls(ProbabilityAgreement.from_dict(validation) if validation else None)


@dataclass
class CandidateResult(_Record):
    """One fitted grid point: its id, family, parameters and validation metrics."""

    KIND: ClassVar[str] = "candidate_result"

    candidate_id: str
    family: str
    params: dict[str, Any]
    validation_metrics: dict[str, float]
    fit_seconds: float = 0.0
    onnx_export: OnnxExportCheck = field(default_factory=OnnxExportCheck)
    task: str = BINARY
    extra: dict[str, Any] = field(default_factory=dict)

    def kfp_metadata(self) -> dict[str, Any]:
        """The model artifact's metadata in KFP (train): which candidate it is."""
        return {"candidate_id": self.candidate_id, "family": self.family, "task": self.task}

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> CandidateResult:
        return cls(**_read_fields(cls, payload, {"onnx_export": OnnxExportCheck.from_dict}))


@dataclass(frozen=True)
class LeaderboardEntry:
    """One candidate as the leaderboard lists it."""

    candidate_id: str
    family: str
    params: dict[str, Any]
    validation_metrics: dict[str, float]


@dataclass
class Selection(_Record):
    """Which candidate select kept, by which validation metric, and the leaderboard."""

    KIND: ClassVar[str] = "selection"

    winner: CandidateResult
    selection_metric: str
    leaderboard: list[LeaderboardEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def kfp_metadata(self) -> dict[str, Any]:
        """The best model's metadata in KFP (select): the winner and the metric it won by."""
        return {"candidate_id": self.winner.candidate_id, "family": self.winner.family,
                "selection_metric": self.selection_metric}

    def _payload(self) -> dict[str, Any]:
        return {"winner": self.winner.to_dict(), "selection_metric": self.selection_metric,
                "leaderboard": [asdict(e) for e in self.leaderboard], **self.extra}

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> Selection:
        values = field_values(cls, payload)
        return cls(winner=CandidateResult.from_dict(payload["winner"]), selection_metric=payload["selection_metric"],
                   leaderboard=[nested(LeaderboardEntry, e) for e in payload.get("leaderboard", [])],
                   extra=values["extra"])


# --- validate -> (summary, report, register) ------------------------------------------------------------------------

@dataclass(frozen=True)
class Anomaly:
    """One finding: which column, which check, what was seen and what is allowed."""

    column: str
    check: str
    observed: str
    allowed: str
    blocking: bool

    def message(self) -> str:
        """One line naming column, check, observed and allowed value."""
        return f"{self.column}: {self.check} (observed {self.observed}; allowed {self.allowed})"


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature: the distance, its threshold, and both distributions for plotting."""

    column: str
    kind: str            # "numeric" or "categorical"
    measure: str         # "jensen_shannon" or "l_infinity"
    value: float
    threshold: float
    labels: list[str]
    reference: list[float]
    current: list[float]

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drifted": self.drifted}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> FeatureDrift:
        return nested(cls, value)  # "drifted" is derived, not a field


@dataclass(frozen=True)
class NumericProfile(_Nested):
    """Where a numeric column's values (or a model's predicted probabilities) fell: bin edges at the
    reference's quantiles and the share of values in each bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)``,
    then the missing share (``tollgate.steps.drift``). Drift bins new values on the same edges."""

    edges: list[float]
    shares: list[float]


@dataclass
class ColumnSchema:
    """One column of a :class:`DataSchema`: its role and dtype family, and for a feature what later
    data is compared with (numeric: range, quantiles and a binned profile; text and booleans:
    category shares). Fields that do not apply are None and left out on disk."""

    name: str
    role: str            # "feature", "label" or "ignored"
    dtype: str
    family: str          # tollgate.steps.dtypes.column_kind: numeric, bool, datetime or string
    null_fraction: float
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    quantiles: dict[str, float] | None = None
    profile: NumericProfile | None = None         # a numeric column's bins (drift)
    categories: dict[str, float] | None = None   # category -> share of rows
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a newer format, written back as read

    def to_dict(self) -> dict[str, Any]:
        return fields_with_extra(self, skip_none=True)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ColumnSchema:
        return cls(**_read_fields(cls, value, {"profile": NumericProfile.from_dict}))


@dataclass
class DataSchema(_Record):
    """What the data a version was trained on looked like (validate writes it, the registry keeps it
    as ``data_schema.json``): later runs validate their data against it, ``tollgate monitor`` and
    retrain-check compare live traffic with it."""

    KIND: ClassVar[str] = "data_schema"

    rows: int
    target: str
    positive_label: Any
    label_shares: dict[str, float]
    label_missing: int
    duplicate_share: float
    columns: list[ColumnSchema]
    extra: dict[str, Any] = field(default_factory=dict)

    def _payload(self) -> dict[str, Any]:
        return {"rows": self.rows, "target": self.target, "positive_label": self.positive_label,
                "label": {"shares": self.label_shares, "missing": self.label_missing},
                "duplicate_share": self.duplicate_share, "columns": [c.to_dict() for c in self.columns],
                **self.extra}

    @classmethod
    def _upgrade(cls, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        # Format 0: the untagged file of Tollgate before records, marked {"format": 1}; same fields.
        if version == 0:
            payload = {k: v for k, v in payload.items() if k != "format"}
        return payload

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> DataSchema:
        label = payload.get("label") or {}
        known = {"rows", "target", "positive_label", "label", "duplicate_share", "columns"}
        return cls(rows=int(payload.get("rows") or 0), target=payload.get("target", ""),
                   positive_label=payload.get("positive_label"), label_shares=dict(label.get("shares") or {}),
                   label_missing=int(label.get("missing") or 0),
                   duplicate_share=float(payload.get("duplicate_share") or 0.0),
                   columns=[ColumnSchema.from_dict(c) for c in payload.get("columns") or []],
                   extra={k: v for k, v in payload.items() if k not in known})


@dataclass
class ValidationReport(_Record):
    """Validation outcome; ``passed`` is False when any anomaly blocks."""

    KIND: ClassVar[str] = "validation_report"

    anomalies: list[Anomaly] = field(default_factory=list)
    reference_version: int | None = None
    rows: int = 0
    drift: list[FeatureDrift] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(a.blocking for a in self.anomalies)

    @property
    def warnings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if not a.blocking]

    @property
    def drifted_columns(self) -> list[str]:
        return [d.column for d in self.drift if d.drifted]

    def kfp_metadata(self) -> dict[str, Any]:
        """The validation report's metadata in KFP (validate): the verdict, how many anomalies and
        warnings, and the drifted columns."""
        return {"passed": self.passed, "anomalies": len(self.anomalies), "warnings": len(self.warnings),
                "drifted": self.drifted_columns}

    def _payload(self) -> dict[str, Any]:
        return {"passed": self.passed, "reference_version": self.reference_version, "rows": self.rows,
                "note": self.note, "anomalies": [asdict(a) for a in self.anomalies],
                "drift": [d.to_dict() for d in self.drift], **self.extra}

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> ValidationReport:
        extra = {k: v for k, v in field_values(cls, payload)["extra"].items() if k != "passed"}  # derived
        return cls(anomalies=[nested(Anomaly, a) for a in payload.get("anomalies", [])],
                   reference_version=payload.get("reference_version"), rows=int(payload.get("rows") or 0),
                   drift=[FeatureDrift.from_dict(d) for d in payload.get("drift", [])], note=payload.get("note", ""),
                   extra=extra)

    def failure_message(self) -> str:
        """The text a blocked run fails with: every blocking anomaly and how to relax it."""
        from tollgate.config import ALWAYS_BLOCKING_CHECKS

        lines = []
        for anomaly in self.anomalies:
            if anomaly.blocking:
                hint = "" if anomaly.check in ALWAYS_BLOCKING_CHECKS else \
                    f"  [validation.severity.{anomaly.check}: warning would allow it]"
                lines.append(anomaly.message() + hint)
        return "validation failed; nothing will be trained or registered:\n  " + "\n  ".join(lines)


# --- evaluate -> gate, register, report, summary ---------------------------------------------------------------------

@dataclass
class GroupRates:
    """One group of a sensitive attribute on the test split (tollgate.steps.fairness)."""

    group: str
    count: int
    positives: int
    selection_rate: float
    tpr: float | None            # None: fewer positive rows than fairness.min_group_positives
    fpr: float | None
    bounded: bool                # at least fairness.min_group_size rows: the gate bounds it
    selection_ratio_to_highest: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return fields_with_extra(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> GroupRates:
        return cls(**field_values(cls, value))


# The fairness measures the gate can bound (gate.fairness), in the order rules are reported.
FAIRNESS_MEASURES = ("disparate_impact", "equal_opportunity_difference")


@dataclass
class AttributeFairness:
    """A sensitive attribute's groups and the two disparities the gate bounds; a disparity that could
    not be measured is None, with the reason in ``unmeasured``. A multiclass model's record is
    one-vs-rest for ``measured_class`` (``"class"`` on disk)."""

    groups: list[GroupRates]
    disparate_impact: float | None
    equal_opportunity_difference: float | None
    unmeasured: dict[str, str] = field(default_factory=dict)
    min_group_size: int | None = None
    min_group_positives: int | None = None
    bins: list[float] | None = None
    threshold: float | None = None     # the binary decision threshold the decisions were taken at
    measured_class: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def measure(self, name: str) -> float | None:
        """``disparate_impact`` or ``equal_opportunity_difference``."""
        if name not in FAIRNESS_MEASURES:
            raise KeyError(f"{name!r} is not a fairness measure; known: {list(FAIRNESS_MEASURES)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in ("groups", "measured_class", "extra")}
        values["groups"] = [g.to_dict() for g in self.groups]
        if self.measured_class is not None:
            values["class"] = self.measured_class
        return {**values, **self.extra}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> AttributeFairness:
        known = field_values(cls, {k: v for k, v in value.items() if k != "class"})
        known["groups"] = [GroupRates.from_dict(g) for g in value.get("groups", [])]
        known.setdefault("disparate_impact", None)
        known.setdefault("equal_opportunity_difference", None)
        return cls(**known, measured_class=value.get("class"))


@dataclass(frozen=True)
class RocCurve(_Nested):
    """A binary model's ROC curve on the test split, down-sampled (thresholds finite: +inf is 1.0)."""

    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]


@dataclass(frozen=True)
class PrecisionRecallCurve(_Nested):
    """A binary model's precision-recall curve on the test split, down-sampled."""

    precision: list[float]
    recall: list[float]


@dataclass(frozen=True)
class CalibrationCurve(_Nested):
    """Mean predicted probability against the observed positive rate, per quantile bin of the test split."""

    predicted: list[float]
    observed: list[float]


def _with_class(value: dict[str, Any], class_label: Any) -> dict[str, Any]:
    """An entry's JSON object with its class under the key it has on disk, ``"class"``, first."""
    return {"class": class_label, **{k: v for k, v in value.items() if k != "class_label"}}


def _class_fields(kind: type, value: dict[str, Any]) -> dict[str, Any]:
    """A per-class entry's fields from its JSON object, where ``class_label`` is ``"class"`` (a Python
    keyword); keys a newer Tollgate added are ignored."""
    return {"class_label": value["class"], **field_values(kind, {k: v for k, v in value.items() if k != "class"})}


@dataclass(frozen=True)
class ClassPrecisionRecallCurve(_Nested):
    """One class's one-vs-rest precision-recall curve (multiclass), down-sampled; a class absent from
    the test split has empty lists and no average precision (the key is left out on disk)."""

    class_label: Any
    precision: list[float]
    recall: list[float]
    average_precision: float | None = None

    def to_dict(self) -> dict[str, Any]:
        value = _with_class(asdict(self), self.class_label)
        if self.average_precision is None:
            del value["average_precision"]
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ClassPrecisionRecallCurve:
        return cls(**_class_fields(cls, value))


@dataclass(frozen=True)
class ClassMetrics(_Nested):
    """One class's test metrics (multiclass), in the model's class order: the per-class table of the
    evaluation and of a version's ``per_class_test_metrics``."""

    class_label: Any
    precision: float
    recall: float
    f1: float
    support: int                   # test rows of this class
    roc_auc_ovr: float | None      # None: the class is absent from (or the only one in) the test split

    def to_dict(self) -> dict[str, Any]:
        return _with_class(asdict(self), self.class_label)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ClassMetrics:
        return cls(**_class_fields(cls, value))


@dataclass(frozen=True)
class FeatureImportance(_Nested):
    """One input column's permutation importance: the mean drop in the test score (ROC AUC, macro
    one-vs-rest for a multiclass model) when its values are shuffled, and its spread over the repeats."""

    feature: str
    importance: float
    std: float


@dataclass(frozen=True)
class ImportanceBounds(_Nested):
    """How far permutation importance went (``tollgate.steps.evaluate.top_feature_importance``): the
    rows sampled and the columns permuted of their totals, how the columns were chosen ("all", or
    "screened": the ``max_features`` the predictions vary with most), the repeats, the time budget
    and whether it stopped the loop, and the seconds taken."""

    rows_sampled: int
    rows_total: int
    features_permuted: int
    features_total: int
    selection: str
    max_features: int
    repeats: int
    time_budget_seconds: float | None
    budget_hit: bool
    seconds: float


@dataclass
class CandidateEvaluation:
    """The selected candidate and what it scored on the test split (its ONNX graph, the served bytes)."""

    candidate_id: str
    family: str
    params: dict[str, Any]
    validation_metrics: dict[str, float]
    selection_metric: str
    metrics: dict[str, float]
    rows: int
    task: str = BINARY
    classes: list[Any] | None = None
    confusion_matrix: list[list[int]] = field(default_factory=list)
    # Binary: down-sampled ROC / precision-recall / calibration curves; multiclass: pr_per_class.
    roc: RocCurve | None = None
    pr: PrecisionRecallCurve | None = None
    calibration: CalibrationCurve | None = None
    pr_per_class: list[ClassPrecisionRecallCurve] | None = None
    per_class: list[ClassMetrics] | None = None
    # The predicted-probability histogram `tollgate monitor` compares live traffic with (binary).
    prediction_profile: NumericProfile | None = None
    importance: list[FeatureImportance] = field(default_factory=list)
    # How far permutation importance went (rows, columns, time); None in records from before it was bounded.
    importance_bounds: ImportanceBounds | None = None
    # Probability at or above which a binary prediction is positive (the version's, from its input schema).
    decision_threshold: float = DEFAULT_DECISION_THRESHOLD
    # Per sensitive attribute (multiclass: "<attribute> (class <c>)"), as the gate bounds it.
    fairness: dict[str, AttributeFairness] | None = None
    # Evaluate's note on the fairness measures it skipped and why (multiclass: no class, or an unknown one, named).
    fairness_skipped: str | None = None
    fit_seconds: float = 0.0
    onnx_export: OnnxExportCheck = field(default_factory=OnnxExportCheck)
    extra: dict[str, Any] = field(default_factory=dict)

    # How each nested value is read from its JSON (fairness: see __post_init__).
    _READERS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "roc": RocCurve.from_dict, "pr": PrecisionRecallCurve.from_dict, "calibration": CalibrationCurve.from_dict,
        "pr_per_class": _each(ClassPrecisionRecallCurve.from_dict), "per_class": _each(ClassMetrics.from_dict),
        "prediction_profile": NumericProfile.from_dict, "importance": _each(FeatureImportance.from_dict),
        "importance_bounds": ImportanceBounds.from_dict, "onnx_export": OnnxExportCheck.from_dict}

    def __post_init__(self) -> None:
        # evaluate's result and older records carry the fairness records as plain dicts.
        if self.fairness is not None:
            self.fairness = {attribute: record if isinstance(record, AttributeFairness)
                             else AttributeFairness.from_dict(record) for attribute, record in self.fairness.items()}

    @property
    def multiclass(self) -> bool:
        return self.task == MULTICLASS

    @property
    def headline_metric(self) -> str:
        """The one number a run is known by: ROC AUC, macro one-vs-rest for a multiclass model."""
        return "roc_auc_ovr_macro" if self.multiclass else "roc_auc"

    def fairness_measures(self) -> dict[str, dict[str, float | None]]:
        """Per sensitive attribute, the two bounded measures (None when unmeasured)."""
        return {attribute: {name: record.measure(name) for name in FAIRNESS_MEASURES}
                for attribute, record in (self.fairness or {}).items()}

    def to_dict(self) -> dict[str, Any]:
        return fields_with_extra(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> CandidateEvaluation:
        """From the evaluation record's ``candidate`` (keys it does not know go to ``extra``)."""
        return cls(**_read_fields(cls, value, cls._READERS))


@dataclass
class ChampionEvaluation:
    """The production champion on the same test rows: its metrics, or why it could not be scored."""

    version: int
    metrics: dict[str, float] | None = None
    error: str | None = None
    decision_threshold: float = DEFAULT_DECISION_THRESHOLD
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation(_Record):
    """Candidate and champion on the same test rows: what the gate decides on."""

    KIND: ClassVar[str] = "evaluation"

    candidate: CandidateEvaluation
    champion: ChampionEvaluation | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def _payload(self) -> dict[str, Any]:
        return {"candidate": self.candidate.to_dict(),
                "champion": fields_with_extra(self.champion) if self.champion else None, **self.extra}

    @classmethod
    def _upgrade(cls, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        if version == 0:  # before records: the candidate carried the train task's metadata, params as JSON text
            candidate = dict(payload["candidate"])
            if "params" not in candidate:
                candidate["params"] = json.loads(candidate.pop("params_json", None) or "{}")
            candidate.setdefault("selection_metric", "roc_auc")
            payload = {**payload, "candidate": candidate}
        return payload

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> Evaluation:
        champion = payload.get("champion")
        return cls(candidate=CandidateEvaluation.from_dict(payload["candidate"]),
                   champion=ChampionEvaluation(**field_values(ChampionEvaluation, champion)) if champion else None,
                   extra=field_values(cls, payload)["extra"])


@dataclass(frozen=True)
class Rule:
    """One checked rule of the gate and its outcome."""

    name: str
    metric: str
    passed: bool
    observed: float | None
    allowed: str
    detail: str


@dataclass(frozen=True)
class Decision(_Record):
    """The gate's verdict: passed, the reasons, and every rule checked."""

    KIND: ClassVar[str] = "decision"

    passed: bool
    reasons: list[str]
    rules: list[Rule] = field(default_factory=list)
    champion_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """The verdict as one word, ``"passed"`` or ``"blocked"`` (the report task's output)."""
        return "passed" if self.passed else "blocked"

    def kfp_metadata(self) -> dict[str, Any]:
        """The decision's metadata in KFP (gate): the verdict and its reasons."""
        return {"passed": self.passed, "reasons": self.reasons}

    def _payload(self) -> dict[str, Any]:
        payload = fields_with_extra(self)
        for rule in payload["rules"]:  # NaN is not JSON: an unmeasured value is null
            if isinstance(rule["observed"], float) and math.isnan(rule["observed"]):
                rule["observed"] = None
        return payload

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> Decision:
        return cls(passed=payload["passed"], reasons=list(payload["reasons"]),
                   rules=[nested(Rule, r) for r in payload.get("rules", [])],
                   champion_version=payload.get("champion_version"), extra=field_values(cls, payload)["extra"])


# --- retrain-check, infra-validate, deploy -> (summary, report) ---------------------------------------------------

@dataclass(frozen=True)
class LargestDrift(_Nested):
    """The feature whose drift came closest to (or went furthest past) its threshold."""

    column: str
    measure: str          # "jensen_shannon" or "l_infinity"
    value: float
    threshold: float


@dataclass
class RetrainDecision(_Record):
    """Whether to train, and the numbers behind it (summary, JSON and report show ``message``)."""

    KIND: ClassVar[str] = "retrain_decision"

    train: bool
    when: str
    message: str
    production_version: int | None = None
    basis: str = ""                       # "traffic", "data", "fingerprint" or "" (nothing to compare)
    rows: int = 0
    alerts: list[str] = field(default_factory=list)
    largest: LargestDrift | None = None   # the feature closest to (or furthest past) its threshold
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> RetrainDecision:
        return cls(**_read_fields(cls, payload, {"largest": LargestDrift.from_dict}))

    def kfp_metadata(self) -> dict[str, Any]:
        """The decision's metadata in KFP (retrain-check): whether the run trains, and why."""
        return {"train": self.train, "message": self.message}


@dataclass(frozen=True)
class SklearnAgreement(ProbabilityAgreement):
    """Infra-validation's comparison of the served graph with the scikit-learn Pipeline's saved test
    probabilities: what was measured, and the bounds it was held to."""

    tolerance: float
    max_class_flips: int | None = None    # None: flips only warn


@dataclass
class InfraValidation(_Record):
    """Infra-validation's verdict: whether the candidate loaded and answered in the real model server
    exactly as in-process onnxruntime (and close to the scikit-learn Pipeline), with why not."""

    KIND: ClassVar[str] = "infra_validation"

    passed: bool
    reason: str = ""
    protocols: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int | None = None                                 # test rows sent
    startup_seconds: float | None = None
    latency_ms: dict[str, float] | None = None              # per protocol
    max_abs_difference: dict[str, float] | None = None      # per protocol, against in-process onnxruntime
    sklearn_agreement: SklearnAgreement | None = None       # against the Pipeline's saved test probabilities
    extra: dict[str, Any] = field(default_factory=dict)

    def kfp_metadata(self) -> dict[str, Any]:
        """The report's metadata in KFP (infra-validate): the verdict, its warnings and the agreement
        with the scikit-learn Pipeline."""
        agreement = None if self.sklearn_agreement is None else self.sklearn_agreement.to_dict()
        return {"passed": self.passed, "warnings": self.warnings, "sklearn_agreement": agreement}

    def _payload(self) -> dict[str, Any]:  # what was not measured is left out, as before the record
        return {k: v for k, v in super()._payload().items() if v is not None}

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> InfraValidation:
        return cls(**_read_fields(cls, payload, {"sklearn_agreement": SklearnAgreement.from_dict}))


@dataclass
class DeployResult(_Record):
    """Where the version went, what the aliases look like now, and whether it was promoted (not when
    the champion changed during the run)."""

    KIND: ClassVar[str] = "deploy_result"

    target: str
    version: int
    aliases: dict[str, Any]
    detail: str
    promoted: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def kfp_metadata(self) -> dict[str, Any]:
        """The result's metadata in KFP (deploy): where the version went and whether it was promoted."""
        return {"target": self.target, "version": self.version, "promoted": self.promoted}


# --- ingest -> (register, report, the run summary): the data's lineage, carried as the raw dataset's KFP metadata ----------

@dataclass
class DataLineage:
    """What ingest recorded about the data a run trained on: where it came from, how many rows, its
    fingerprint (``retrain.when: new_data`` compares it), the time window and ingest's notes. It
    travels as the raw dataset's KFP metadata and is kept in a version's ``metadata.json``
    (``data``, with the split's row counts beside it)."""

    source: str | None = None
    rows: int | None = None
    fingerprint: str | None = None
    window: list[str] | None = None
    notes: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: Any) -> DataLineage:
        """From the raw dataset's metadata or a version's ``data`` (other keys are ignored). KFP keeps
        artifact metadata as a protobuf Struct, where every number is a float: counts are made whole
        again (32561 rows would otherwise be recorded, and listed, as 32561.0)."""
        return cls(**{f.name: _whole_numbers((metadata or {}).get(f.name)) for f in fields(cls)})


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- register -> registry -> (deploy, retrain-check, monitor, the model server) ---------------------------------

@dataclass(frozen=True)
class GateVerdict(_Nested):
    """The gate's verdict as a version's ``metadata.json`` keeps it (``gate``): passed, and why."""

    passed: bool
    reasons: list[str]


@dataclass(frozen=True)
class TrainingData(_Nested):
    """The data a version was trained on, as its ``metadata.json`` keeps it (``data``): ingest's lineage
    and the split's row counts (split name -> rows), in one JSON object."""

    lineage: DataLineage
    split_rows: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.lineage.to_dict(), "split_rows": self.split_rows}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> TrainingData:
        return cls(DataLineage.from_metadata(value), _whole_numbers(value.get("split_rows")))


@dataclass
class VersionMetadata(_Record):
    """A registered version's ``metadata.json``: what was trained, on which data, how it did on the
    test split, why the gate let it through and which champion it was compared with. Register
    writes it; the registry adds ``model_name``, ``version`` and ``created_at``; deploy, rollback,
    retrain-check, ``tollgate monitor`` and the model server read it. Fields a version does not
    have (an older one, or infra-validation's staged candidate) keep their defaults; a binary
    version leaves out the multiclass fields, as it always did, and a version without data, gate
    or features records each as an empty object, as it always did."""

    KIND: ClassVar[str] = "version_metadata"

    candidate_id: str | None = None
    family: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    validation_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    data: TrainingData | None = None                             # None: not recorded
    gate: GateVerdict | None = None                              # None: not recorded
    replaced_champion: int | None = None                         # deploy promotes only over this one
    pipeline_run_id: str | None = None
    code_version: str | None = None
    champion_test_metrics: dict[str, float] | None = None
    prediction_profile: NumericProfile | None = None             # the predicted probability on the test split
    features: ServedFeatures | None = None                       # None: not recorded
    task: str | None = None                                      # "multiclass", or None (binary)
    per_class_test_metrics: list[ClassMetrics] | None = None
    model_name: str | None = None                                # added by the registry
    version: int | str | None = None                             # added by the registry
    created_at: str | None = None                                # added by the registry
    extra: dict[str, Any] = field(default_factory=dict)

    # Written as an empty object when None, as they were when they were plain mappings.
    _EMPTY_WHEN_NONE: ClassVar[tuple[str, ...]] = ("data", "gate", "features")
    _READERS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "data": TrainingData.from_dict, "gate": GateVerdict.from_dict, "features": ServedFeatures.from_dict,
        "prediction_profile": NumericProfile.from_dict, "per_class_test_metrics": _each(ClassMetrics.from_dict)}

    def __post_init__(self) -> None:
        # A hand-edited or older file may hold null where a mapping belongs: read it as empty.
        for name in ("params", "validation_metrics", "test_metrics"):
            if getattr(self, name) is None:
                setattr(self, name, {})

    def _payload(self) -> dict[str, Any]:
        payload = {k: v for k, v in super()._payload().items()
                   if v is not None or k not in ("task", "per_class_test_metrics")}
        for name in self._EMPTY_WHEN_NONE:
            if payload[name] is None:
                payload[name] = {}
        return payload

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> VersionMetadata:
        # An empty object is what a version without data, gate or features has always recorded.
        values = {k: None if k in cls._EMPTY_WHEN_NONE and v == {} else v for k, v in payload.items()}
        return cls(**_read_fields(cls, values, cls._READERS))

    @property
    def lineage(self) -> DataLineage:
        """The data this version was trained on (empty when its metadata records none)."""
        return self.data.lineage if self.data is not None else DataLineage()

    @property
    def binary_labels(self) -> tuple[Any, Any]:
        """The negative and the positive label a binary version answers with: its features' labels,
        0 and 1 where its metadata records none (what the model server has always answered then)."""
        features = self.features or ServedFeatures()
        return (0 if features.negative_label is None else features.negative_label,
                1 if features.positive_label is None else features.positive_label)

