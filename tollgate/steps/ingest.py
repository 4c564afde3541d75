"""Ingest: read the training table; refuse what cannot be read or lacks the configured columns."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tollgate.errors import DataError
from tollgate.s3 import client_from_env, is_s3_uri, parse_s3_uri

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class IngestResult:
    """The table after ingest, plus what the summary and lineage need."""

    frame: pd.DataFrame
    source: str
    fingerprint: str
    window: tuple[str, str] | None


def read_table(source: str) -> pd.DataFrame:
    """Read a CSV or Parquet file from a local path or ``s3://bucket/key``."""
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
            return _read_local(local, source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    return _read_local(path, source)


def _read_local(path: Path, label: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError(f"{label} is empty (0 bytes)")
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"cannot parse {label}: {exc}") from exc


def load_source(source: str, builtin: dict[str, Any] | None = None) -> pd.DataFrame:
    """Load ``builtin`` (generated with the given settings) or a file/S3 object."""
    if source == "builtin":
        from tollgate.data.builtin import generate_applicants

        return generate_applicants(**(builtin or {}))
    return read_table(source)


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


def check_table(frame: pd.DataFrame, target: str, drop: list[str] | None = None) -> None:
    """Raise :class:`DataError` if the configured columns cannot be found in ``frame``.

    Ingest refuses only what it cannot address; problems with the contents (no rows, too
    few rows, label problems, duplicates) are anomalies of the validate step, reported
    with a severity from ``validation.severity`` (see :mod:`tollgate.steps.validate`).
    """
    if frame.shape[1] == 0:
        raise DataError("the data has no columns")
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in the data; set data.target to one of: "
                        f"{', '.join(map(str, frame.columns[:40]))}")
    missing_drop = sorted(set(drop or []) - set(frame.columns))
    if missing_drop:
        raise DataError(f"data.drop names columns that are not in the data: {missing_drop}")
    feature_columns = set(frame.columns) - {target} - set(drop or [])
    if not feature_columns:
        raise DataError("no feature columns are left after removing the target and data.drop")


def positive_mask(labels: pd.Series, positive_label: Any) -> pd.Series:
    """Boolean mask of positive rows; compares as text when types differ (CSV '1' vs config 1)."""
    mask = labels == positive_label
    if not mask.any():
        mask = labels.astype(str) == str(positive_label)
    return mask


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of the table (row order and values), for lineage in the registry."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(np.ascontiguousarray(pd.util.hash_pandas_object(frame, index=False).to_numpy()).tobytes())
    return "sha256:" + digest.hexdigest()


def ingest(source: str, target: str, drop: list[str] | None = None, builtin: dict[str, Any] | None = None,
           date_column: str | None = None, scheduled_time: str | None = None,
           window_days: int | None = None) -> IngestResult:
    """Load and window the training table and check its configured columns exist."""
    frame = load_source(source, builtin)
    frame, window = select_window(frame, date_column, scheduled_time, window_days)
    check_table(frame, target, drop)
    return IngestResult(frame=frame.reset_index(drop=True), source=source,
                        fingerprint=fingerprint(frame), window=window)
