"""Ingest: read the training table; refuse what cannot be read or lacks the configured columns."""

from __future__ import annotations

import csv as csv_module
import difflib
import hashlib
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tollgate.config import CsvConfig
from tollgate.errors import DataError
from tollgate.records import DataLineage
from tollgate.s3 import client_from_env, is_s3_uri, parse_s3_uri
from tollgate.steps.dtypes import BOOL, NUMERIC, column_kind

if TYPE_CHECKING:
    from tollgate.settings import IngestSettings

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class IngestResult:
    """The table after ingest, plus what the summary and lineage need."""

    frame: pd.DataFrame
    source: str
    fingerprint: str
    window: tuple[str, str] | None
    notes: list[str] = field(default_factory=list)

    def lineage(self) -> DataLineage:
        """What later steps record about the data."""
        return DataLineage(source=self.source, rows=len(self.frame), fingerprint=self.fingerprint,
                           window=list(self.window) if self.window else None, notes=self.notes)

    def kfp_metadata(self) -> dict[str, Any]:
        """The raw dataset's metadata in KFP: the lineage (register, report and the run summary read it
        back with :meth:`DataLineage.from_metadata`) and the column count."""
        return {**self.lineage().to_dict(), "columns": self.frame.shape[1]}


def read_table(source: str, csv: CsvConfig | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file from a local path or ``s3://bucket/key``.

    CSV files are read with ``csv`` (``data.csv``: separator, header, missing markers,
    whitespace, encoding). Anything worth telling the user about how the file was read
    is appended to ``notes``.
    """
    suffix = Path(source.split("?")[0]).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"cannot read {source!r}: expected a .csv or .parquet file")
    if is_s3_uri(source):
        location = parse_s3_uri(source)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / f"data{suffix}"
            try:
                client_from_env().fget_object(location.bucket, location.key, str(local))
            except Exception as exc:
                raise DataError(f"cannot download {source}: {exc}") from exc
            return _read_local(local, source, csv or CsvConfig(), notes)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    return _read_local(path, source, csv or CsvConfig(), notes)


def _read_local(path: Path, label: str, csv: CsvConfig, notes: list[str] | None) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError(f"{label} is empty (0 bytes)")
    if path.suffix.lower() != ".csv":
        try:
            return pd.read_parquet(path)
        except Exception as exc:
            raise DataError(f"cannot parse {label}: {exc}") from exc
    sample = _sample_text(path, csv.encoding, label)
    separator = csv.separator or detect_separator(sample)
    if csv.separator is None and separator != "," and notes is not None:
        notes.append(f"separator {separator!r} detected (set data.csv.separator to override)")
    try:
        frame = pd.read_csv(path, sep=separator, quotechar=csv.quotechar, encoding=csv.encoding,
                            header=csv.header, names=csv.columns, na_values=csv.missing_values or None,
                            skipinitialspace=csv.strip_whitespace, low_memory=False)
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot decode {label} as {csv.encoding} ({exc.reason} at byte {exc.start}); "
                        f"set data.csv.encoding, for example latin-1 or cp1252") from exc
    except Exception as exc:
        raise DataError(f"cannot parse {label} as CSV with separator {separator!r}: {exc}") from exc
    if csv.strip_whitespace:
        frame = _strip_whitespace(frame, csv.missing_values)
    if frame.shape[1] == 1:
        only = str(frame.columns[0])
        others = [c for c in SEPARATOR_CANDIDATES if c != separator and c in only]
        if others:
            raise DataError(f"{label} parsed into one column {_quote(only[:80])} with separator {separator!r}; "
                            f"it looks separated by {others[0]!r}: set data.csv.separator: {others[0]!r}")
    return frame


# The separators detection chooses among; csv.Sniffer guesses from the first lines.
SEPARATOR_CANDIDATES = (",", ";", "\t", "|")


def _sample_text(path: Path, encoding: str, label: str, size: int = 65536) -> str:
    with open(path, "rb") as handle:
        raw = handle.read(size)
    text = raw.decode(encoding, errors="ignore")
    # A cut in the middle of the last line would mislead the sniffer.
    return text[: text.rfind("\n")] if "\n" in text else text


def detect_separator(sample: str) -> str:
    """The separator of a CSV sample among ``SEPARATOR_CANDIDATES`` (``,`` when unclear).

    ``csv.Sniffer`` does the guessing; it is limited to the candidates so that a text
    column full of spaces or colons is never taken for the separator.
    """
    try:
        return csv_module.Sniffer().sniff(sample, delimiters="".join(SEPARATOR_CANDIDATES)).delimiter
    except csv_module.Error:
        return ","


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _strip_whitespace(frame: pd.DataFrame, missing_values: list[str]) -> pd.DataFrame:
    """Header names and text values without surrounding spaces. A value blank after
    stripping is missing, and so is one that only then equals a missing-value marker
    (pandas matches ``na_values`` before any stripping: '"? "' would stay text)."""
    frame = frame.rename(columns=lambda name: name.strip() if isinstance(name, str) else name)
    markers = {""} | {marker.strip() for marker in missing_values}
    for name in frame.columns:
        series = frame[name]
        if series.dtype == object:
            text = series.map(lambda v: v.strip() if isinstance(v, str) else v)
            frame[name] = text.mask(text.isin(markers))
    return frame


def _quote(value: Any) -> str:
    # repr shows what plain text hides: ' Y' is not 'Y'.
    return repr(value)

def load_source(source: str, builtin: dict[str, Any] | None = None, csv: CsvConfig | None = None,
                notes: list[str] | None = None) -> pd.DataFrame:
    """Load ``builtin`` (generated with the given settings) or a file/S3 object."""
    if source == "builtin":
        from tollgate.data.builtin import generate_applicants

        return generate_applicants(**(builtin or {}))
    return read_table(source, csv, notes)


# A text column is read as numeric only when every non-blank value is a number. A mostly
# numeric column with a few distinct other tokens ('?', 'n/a') keeps its text, and the notes
# name those tokens as likely missing-value markers.
MARKER_TOKENS = 3
BOOLEAN_TEXT = {"true": True, "false": False}


def normalize_types(frame: pd.DataFrame, *, target: str, date_column: str | None = None,
                    numeric: list[str] | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """Give text columns the type their values have, and say what changed in ``notes``.

    - ``date_column`` is parsed as dates (a CSV has no date type);
    - a column whose non-missing values are all numbers becomes numeric (blanks are missing),
      instead of a text feature with one category per value;
    - a column of true/false values with blanks becomes a nullable boolean, not text;
    - a column named in ``features.numeric`` that holds other values fails here, naming the
      column and the values, not inside every training task.
    The target keeps its values as read: its labels are compared as text where needed.
    """
    notes = notes if notes is not None else []
    frame = frame.copy()
    forced_numeric = set(numeric or [])
    for name in frame.columns:
        series = frame[name]
        if name == target or series.dtype != object:
            if name in forced_numeric and column_kind(series) not in (NUMERIC, BOOL):
                raise DataError(f"features.numeric names {_quote(name)}, which holds {series.dtype} values")
            continue
        present = series.dropna()
        blanks = int(series.isna().sum())
        if name == date_column:
            dates = pd.to_datetime(present, errors="coerce", format="mixed")
            bad = present[dates.isna()]
            if len(bad) == 0 and len(present):
                frame[name] = pd.to_datetime(series, errors="coerce", format="mixed")
                notes.append(f"{_quote(name)}: read as dates (data.date_column)")
            else:
                notes.append(f"{_quote(name)}: data.date_column, but {len(bad)} values are not dates, e.g. "
                             f"{_examples(bad)}; kept as text")
            continue
        if present.map(lambda v: isinstance(v, bool)).all() or \
                present.map(lambda v: isinstance(v, str) and v.lower() in BOOLEAN_TEXT).all():
            if len(present):
                values = present.map(lambda v: v if isinstance(v, bool) else BOOLEAN_TEXT[v.lower()])
                frame[name] = values.reindex(series.index).astype("boolean")
                notes.append(f"{_quote(name)}: read as boolean{_blanks(blanks)}")
            continue
        numbers = pd.to_numeric(present, errors="coerce")
        bad = present[numbers.isna()]
        if len(present) and len(bad) == 0:
            frame[name] = pd.to_numeric(series, errors="coerce")
            notes.append(f"{_quote(name)}: read as numeric{_blanks(blanks)}")
        elif name in forced_numeric:
            raise DataError(f"features.numeric names {_quote(name)}, but {_count(len(bad), 'value')} "
                            f"{'is not a number' if len(bad) == 1 else 'are not numbers'}, e.g. {_examples(bad)}; add them to data.csv.missing_values or move the "
                            f"column to features.categorical")
        elif len(present) and len(bad) * 2 < len(present) and bad.nunique() <= MARKER_TOKENS:
            notes.append(f"{_quote(name)}: numeric except {_count(len(bad), 'value')} {_examples(bad)}; kept as "
                         f"text. If they mean 'missing', add them to data.csv.missing_values")
    return frame


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _blanks(number: int) -> str:
    return f"; {_count(number, 'blank value')} {'is' if number == 1 else 'are'} missing" if number else ""


def _examples(values: pd.Series, count: int = 5) -> str:
    return repr([str(v)[:40] for v in pd.unique(values)[:count]])


def select_window(frame: pd.DataFrame, date_column: str | None, scheduled_time: str | None,
                  window_days: int | None) -> tuple[pd.DataFrame, tuple[str, str] | None]:
    """Keep the ``window_days`` days before ``scheduled_time`` (a scheduled daily run).

    With no scheduled time or no window, the frame is returned unchanged. The window is
    half-open, ``[end - window_days, end)``, with ``end`` the scheduled day at midnight
    UTC, so a run scheduled at 02:00 trains on whole days up to yesterday.
    """
    if not scheduled_time or not window_days or not date_column:
        return frame, None
    if date_column not in frame.columns:
        raise DataError(f"data.date_column {date_column!r} is not in the data; columns: {list(frame.columns)[:30]}")
    end = parse_scheduled_time(scheduled_time).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=window_days)
    dates = pd.to_datetime(frame[date_column], utc=True, errors="coerce").dt.tz_localize(None)
    selected = frame[(dates >= start) & (dates < end)]
    return selected, (start.date().isoformat(), end.date().isoformat())


def parse_scheduled_time(value: str) -> datetime:
    """Parse KFP's RFC 3339 scheduled time (``2026-11-21T02:00:00Z``) to a naive UTC datetime."""
    try:
        parsed = pd.Timestamp(value)
    except ValueError as exc:
        raise DataError(f"scheduled time {value!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.tz_convert("UTC").tz_localize(None)
    return parsed.to_pydatetime()


def check_table(frame: pd.DataFrame, target: str, drop: list[str] | None = None,
                configured: dict[str, list[str]] | None = None, header_hint: str = "") -> None:
    """Raise :class:`DataError` if the configured columns cannot be found in ``frame``.

    ``configured`` maps other settings that name columns (``features.numeric``,
    ``features.categorical``...) to their columns, so a misspelt one fails here, at the
    start, with a did-you-mean, rather than steps later. Ingest refuses only what it
    cannot address or read as configured (a ``features.numeric`` column holding values that
    are not numbers, see :func:`normalize_types`); problems with the contents (no rows, too
    few rows, label problems, duplicates) are anomalies of the validate step, reported with a
    severity from ``validation.severity`` (see :mod:`tollgate.steps.validate`).
    """
    if frame.shape[1] == 0:
        raise DataError("the data has no columns")
    columns = [str(c) for c in frame.columns]
    if target not in frame.columns:
        raise DataError(f"target column {_quote(target)} is not in the data{_did_you_mean(target, columns)}; "
                        f"set data.target to one of: {', '.join(map(_quote, columns[:40]))}"
                        f"{' ...' if len(columns) > 40 else ''}{header_hint}")
    check_named_columns(frame, {"data.drop": list(drop or []), **(configured or {})}, header_hint)
    feature_columns = set(frame.columns) - {target} - set(drop or [])
    if not feature_columns:
        raise DataError("no feature columns are left after removing the target and data.drop")


def check_named_columns(frame: pd.DataFrame, named: dict[str, list[str]], hint: str = "") -> None:
    """Raise one :class:`DataError` listing every column a setting names that ``frame`` lacks,
    each with a did-you-mean (``named``: ``{"features.numeric": ["age", ...], ...}``)."""
    columns = [str(c) for c in frame.columns]
    problems = [f"{setting} names {_quote(name)}, which is not in the data{_did_you_mean(name, columns)}"
                for setting, names in named.items() for name in names if name not in frame.columns]
    if problems:
        raise DataError("; ".join(problems) + hint)


def _did_you_mean(name: str, columns: list[str]) -> str:
    # difflib ranks by similarity; compare case- and space-insensitively so ' Y' finds 'Y'.
    folded = {c.strip().lower(): c for c in columns}
    matches = difflib.get_close_matches(name.strip().lower(), list(folded), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(_quote(folded[m]) for m in matches)}?)" if matches else ""


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of the table (row order and values), for lineage in the registry."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(np.ascontiguousarray(pd.util.hash_pandas_object(frame, index=False).to_numpy()).tobytes())
    return "sha256:" + digest.hexdigest()


def ingest(source: str, target: str, drop: list[str] | None = None, builtin: dict[str, Any] | None = None,
           date_column: str | None = None, scheduled_time: str | None = None,
           window_days: int | None = None, csv: CsvConfig | None = None, numeric: list[str] | None = None,
           configured: dict[str, list[str]] | None = None) -> IngestResult:
    """Load and window the training table, give text columns honest types, and check that
    every column the configuration names exists.

    ``configured`` maps settings to the columns they name (see :func:`check_table`);
    ``numeric`` is ``features.numeric``. What ingest noticed about types and reading is in
    ``IngestResult.notes``.
    """
    notes: list[str] = []
    frame = load_source(source, builtin, csv, notes)
    if source != "builtin":
        frame = normalize_types(frame, target=target, date_column=date_column, numeric=numeric, notes=notes)
    header_hint = _header_hint(source, frame, csv or CsvConfig(), target)
    check_table(frame, target, drop, configured, header_hint)
    frame, window = select_window(frame, date_column, scheduled_time, window_days)
    return IngestResult(frame=frame.reset_index(drop=True), source=source,
                        fingerprint=fingerprint(frame), window=window, notes=notes)


def _header_hint(source: str, frame: pd.DataFrame, csv: CsvConfig, target: str) -> str:
    """For a CSV whose header row looks like data (a headerless file), how to read it."""
    if target in frame.columns or csv.header is None or not source.lower().split("?")[0].endswith(".csv"):
        return ""
    if header_looks_like_data(frame):
        return (f". The first row looks like data, not a header: set data.csv.header: null and name the "
                f"{frame.shape[1]} columns in data.csv.columns")
    return ""


def header_looks_like_data(frame: pd.DataFrame) -> bool:
    """True when the names of most numeric columns are themselves numbers: the header row
    is then a data row (the test ``csv.Sniffer.has_header`` makes, on the parsed frame)."""
    numeric = [c for c in frame.columns if column_kind(frame[c]) == NUMERIC]
    numbered = [c for c in numeric if _is_number(str(c))]
    return bool(numeric) and len(numbered) * 2 >= len(numeric)


def run_ingest(settings: IngestSettings, data_source: str, scheduled_time: str = "") -> IngestResult:
    """Ingest as the DAG runs it: the step's settings plus this run's data source (the pipeline's
    ``data_source`` parameter, ``data.source`` unless the run overrides it) and scheduled time
    (empty: no window)."""
    if not data_source:
        raise DataError("no data source: give the run's data_source (data.source: 'builtin', a CSV/Parquet path "
                        "or s3://bucket/key)")
    return ingest(data_source, settings.target, drop=settings.drop,
                  builtin=settings.builtin.model_dump(), date_column=settings.date_column,
                  scheduled_time=scheduled_time or None, window_days=settings.window_days, csv=settings.csv,
                  numeric=settings.numeric, configured=settings.configured)
