"""The prediction log: what the model server answered (and refused), written as Parquet by the server itself.

KServe's payload logger records only HTTP 200 responses (kserve/kserve#2722) and ships
CloudEvents to an HTTP sink someone else must run; here the server writes the records
``tollgate monitor`` reads, including refused requests with their error class.

Design, and why:

* **the request path only enqueues.** A request hands references to its decoded inputs,
  its outputs and timings to :meth:`PredictionLog.record`, which appends to a bounded
  buffer (no lock, no thread wake-up). Casting the inputs with the model's schema, building
  Arrow tables and writing happen in one background thread that polls the buffer and
  yields the GIL between entries. A full queue drops the record and counts
  it (``tollgate_prediction_log_dropped_total{reason="queue_full"}`` on ``/metrics``);
  no failure of the log ever reaches a client.
* **files appear whole.** A flush (every ``flush_records`` requests or ``flush_seconds``)
  writes one Parquet file per (date, version) partition: locally to a dot-prefixed
  temporary name in the partition directory, then ``os.replace`` (atomic on one file
  system); on S3 as a single PUT, which is visible whole or not at all. Readers skip
  names starting with ``.`` (as pyarrow's dataset discovery does), so a crash mid-flush
  leaves nothing a reader would take for a record.
* **one row per predicted row.** Each answered request contributes one row per input row
  (``row`` is its index in the request) with the cast inputs as ``input.<column>`` and
  each per-row output as ``output.<name>`` (a list per row for [n, k] outputs); a refused
  request contributes one row with ``error`` set and no inputs.

Layout: ``<log_uri>/<model>/date=YYYY-MM-DD/version=<v>/part-<time>-<id>.parquet``.
"""

from __future__ import annotations

import collections
import functools
import io
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("tollgate.serving")

INPUT_PREFIX = "input."
OUTPUT_PREFIX = "output."
META_COLUMNS = ("time", "request_id", "row", "model_name", "model_version", "protocol", "latency_ms", "error")

@dataclass(frozen=True)
class LogCounters:
    """The prediction log's Prometheus counters (``/metrics``: ``*_total``)."""

    dropped: Any   # labelled by reason: queue_full, write_error, error
    written: Any


@functools.cache
def log_counters() -> LogCounters:
    """The counters, registered in prometheus_client's default registry (what kserve's ``/metrics``
    serves) when the first log of the process is created, not when this module is imported:
    importing must not change a process's global state, and a server with the log off has
    nothing to count. Cached, because registering a name twice raises."""
    from prometheus_client import Counter

    return LogCounters(
        dropped=Counter("tollgate_prediction_log_dropped",
                        "Prediction-log records dropped (queue full or write failed).", ["reason"]),
        written=Counter("tollgate_prediction_log_written", "Prediction-log rows written to the log."))


@dataclass(slots=True)
class Entry:
    """What one request hands to the log: references only, converted in the writer thread."""

    time: float                       # epoch seconds when the request arrived
    request_id: str
    protocol: str                     # "v1-rest", "v2-rest" or "v2-grpc"
    latency_ms: float
    error: str | None                 # the refusal's exception class, None when answered
    inputs: Any                       # v2: kserve InferInput tensors as decoded; v1: the request body (bytes)
    outputs: Any                      # v2: (name, data) of each output tensor; v1: the answer body (bytes)


def partition_key(model_name: str, day: str, version: str, name: str) -> str:
    """Relative path of one log file."""
    return f"{model_name}/date={day}/version={version}/{name}"


class _Columns:
    """Rows of one UTC day: converted entries become small Arrow tables (one per chunk), so
    the flush only concatenates them (C++ work) instead of converting a whole batch at once."""

    def __init__(self, columns: Sequence[str]):
        self.columns = list(columns)
        self.entries: list[Entry] = []
        self.converted = 0   # entries[:converted] are in ``tables`` or the lists below
        self.tables: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        self.meta: dict[str, list[Any]] = {name: [] for name in META_COLUMNS}
        self.inputs: dict[str, list[Any]] = {column: [] for column in self.columns}
        self.outputs: dict[str, list[Any]] = {}
        self.rows = 0

    def seal(self) -> None:
        """Turn the rows converted so far into one Arrow table."""
        import pyarrow as pa

        if not self.rows:
            return
        ordered = {}
        for name in META_COLUMNS:
            values = self.meta[name]
            if name == "time":
                ordered[name] = pa.array(values, type=pa.timestamp("us", tz="UTC"))
            elif name == "error":
                ordered[name] = pa.array(values, type=pa.string())
            else:
                ordered[name] = pa.array(values)
        for column, values in self.inputs.items():
            ordered[INPUT_PREFIX + column] = _array(values)
        for name, values in self.outputs.items():
            ordered[OUTPUT_PREFIX + name] = _array(values + [None] * (self.rows - len(values)))
        self.tables.append(pa.table(ordered))
        self._reset()

    def table(self) -> Any:
        import pyarrow as pa

        self.seal()
        # A column that was all null in one chunk (null type) takes the type of the others.
        return pa.concat_tables(self.tables, promote_options="permissive")


class PredictionLog:
    """Bounded in-memory buffer + background Parquet writer for one served model version.

    ``cast_inputs(inputs) -> {column: values}`` is the model's schema casting (the same
    columns the model saw) and ``cast_instances`` its v1 counterpart; they run in the writer
    thread only. The request path appends to a deque (no lock, no thread wake-up); the writer
    polls it every :data:`POLL_SECONDS` and yields the GIL between entries, so its Python
    work is spread thin instead of stalling the event loop for a whole batch.
    """

    POLL_SECONDS = 0.05

    def __init__(self, log_uri: str, model_name: str, version: str, columns: Sequence[str],
                 cast_inputs: Callable[[Sequence[Any]], dict[str, Any]], sample_rate: float = 1.0,
                 flush_records: int = 1000, flush_seconds: float = 10.0, queue_size: int = 10000,
                 cast_instances: Callable[[Any], dict[str, Any]] | None = None):
        self.log_uri = log_uri.rstrip("/")
        self.model_name = model_name
        self.version = version or "unknown"
        self.columns = list(columns)
        self.cast_inputs = cast_inputs
        self.cast_instances = cast_instances
        self.sample_rate = sample_rate
        self.flush_records = max(1, flush_records)
        self.flush_seconds = flush_seconds
        self.queue_size = max(1, queue_size)
        self._pending: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._random = random.Random()
        self._s3 = None
        self.files_written = 0
        self.counters = log_counters()

    # -- request path ---------------------------------------------------------------------

    @staticmethod
    def new_request_id() -> str:
        """An id for a request that came without one."""
        return uuid.uuid4().hex

    def sampled(self) -> bool:
        """Whether this request is logged (``sample_rate`` of them)."""
        return self.sample_rate >= 1.0 or self._random.random() < self.sample_rate

    def record(self, entry: Entry) -> None:
        """Queue ``entry`` without blocking; a full buffer drops it and counts the drop. Never raises."""
        try:
            # deque.append is atomic under the GIL; the length check may overshoot by the number of
            # threads appending at once (one event loop and the gRPC loop here), which is harmless.
            if len(self._pending) >= self.queue_size:
                self.counters.dropped.labels(reason="queue_full").inc()
                return
            self._pending.append(entry)
        except Exception:  # pragma: no cover - logging must never fail a request
            self.counters.dropped.labels(reason="error").inc()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> PredictionLog:
        """Start the writer thread (a daemon: a killed server loses at most the unflushed records)."""
        if self.log_uri.startswith("s3://"):
            from tollgate.s3 import client_from_env

            self._s3 = client_from_env()
        self._thread = threading.Thread(target=self._run, name="tollgate-prediction-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is buffered and stop the writer (called at shutdown)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        days: dict[str, _Columns] = {}
        count = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            stopping = self._stop.wait(self.POLL_SECONDS)
            while self._pending:
                entry = self._pending.popleft()
                try:
                    self._absorb(entry, days)
                except Exception:  # a record that cannot be converted is dropped, not the writer
                    self.counters.dropped.labels(reason="write_error").inc()
                count += 1
                if count % self.CONVERT_CHUNK == 0:
                    self._convert_all(days)
                if count >= self.flush_records:
                    self._flush(days, count)
                    days, count = {}, 0
                    deadline = time.monotonic() + self.flush_seconds
                time.sleep(0)  # hand the GIL back to the event loop between entries
            self._convert_all(days)  # spread the work over the polls instead of one burst per flush
            if stopping:
                self._flush(days, count)
                return
            if time.monotonic() >= deadline:
                if count:
                    self._flush(days, count)
                    days, count = {}, 0
                deadline = time.monotonic() + self.flush_seconds

    def _convert_all(self, days: dict[str, _Columns]) -> None:
        for day in list(days):
            try:
                self._convert(days[day])
            except Exception as exc:  # never let one bad record stop the writer: drop that day's buffer
                self.counters.dropped.labels(reason="write_error").inc(len(days[day].entries))
                logger.warning("prediction log: %d records dropped: %s: %s", len(days[day].entries),
                               type(exc).__name__, str(exc)[:200])
                del days[day]

    def _flush(self, days: dict[str, _Columns], count: int) -> None:
        for day, columns in days.items():
            if not columns.entries:
                continue
            try:
                self._convert(columns)
                table = columns.table()
                if not table.num_rows:
                    continue
                time.sleep(0)
                self._write(day, table)
            except Exception as exc:  # the log is best effort; the server keeps answering
                self.counters.dropped.labels(reason="write_error").inc(len(columns.entries))
                logger.warning("prediction log: %d records not written to %s: %s: %s", len(columns.entries),
                               self.log_uri,
                               type(exc).__name__, str(exc)[:200])

    def _absorb(self, entry: Entry, days: dict[str, _Columns]) -> None:
        """File one entry under its UTC day; converting it waits for the flush (see :meth:`_convert`)."""
        day = datetime.fromtimestamp(entry.time, UTC).strftime("%Y-%m-%d")
        target = days.get(day)
        if target is None:
            target = days[day] = _Columns(self.columns)
        target.entries.append(entry)

    # Casting is most of the writer's work (~90 us for a one-row request of 24 columns, almost all
    # of it per-call overhead): consecutive requests of the same shape are cast as one batch.

    @staticmethod
    def _signature(entry: Entry) -> tuple[str, Any]:
        if entry.error is not None or entry.inputs is None:
            return "refused", None
        if isinstance(entry.inputs, (bytes, bytearray)):
            return "v1", None
        return "v2", tuple([(t.name, t.datatype, len(t.shape)) for t in entry.inputs])

    # Entries converted per GIL hand-back: small enough that the event loop never waits long.
    CONVERT_CHUNK = 64
    # Rows per Arrow chunk: fewer, larger pa.array calls cost less in total than many small ones.
    SEAL_ROWS = 256

    def _convert(self, target: _Columns) -> None:
        """Cast the not yet converted entries of ``target`` (batched by request shape) into its columns."""
        entries = target.entries
        signatures = [self._signature(entry) for entry in entries[target.converted:]]
        offset = target.converted
        index = target.converted
        while index < len(entries):
            signature = signatures[index - offset]
            end = index + 1
            # Only one-dimensional (per-column) tensors concatenate; a 2-D input is cast on its own.
            if signature[0] == "v1" or signature[0] == "v2" and all(dims == 1 for _, _, dims in signature[1]):
                while end < len(entries) and end - index < self.CONVERT_CHUNK and signatures[end - offset] == signature:
                    end += 1
            self._append_group(target, signature[0], entries[index:end])
            if target.rows >= self.SEAL_ROWS:
                target.seal()
            time.sleep(0)  # hand the GIL back to the event loop between groups
            index = end
        target.converted = len(entries)

    def _cast_one(self, entry: Entry) -> tuple[dict[str, Any] | None, Any]:
        if entry.error is not None or entry.inputs is None:
            return None, None
        try:
            if isinstance(entry.inputs, (bytes, bytearray)):
                return self._v1(entry)
            return self.cast_inputs(entry.inputs), entry.outputs
        except Exception:
            return None, None

    def _cast_batch(self, kind: str, group: list[Entry]) -> tuple[dict[str, Any], list[int], list[Any]]:
        """One cast for a run of same-shaped requests: (columns over all rows, rows per entry, outputs per entry)."""
        if kind == "v2":
            from kserve.protocol.infer_type import InferInput

            counts = [int(entry.inputs[0].shape[0]) for entry in group]
            combined = []
            for position, tensor in enumerate(group[0].inputs):
                data: list[Any] = []
                for entry in group:
                    values = entry.inputs[position].data
                    data.extend(values if isinstance(values, list) else _python_list(values))
                combined.append(InferInput(name=tensor.name, shape=[len(data)], datatype=tensor.datatype, data=data))
            return self.cast_inputs(combined), counts, [entry.outputs for entry in group]
        import orjson

        if self.cast_instances is None:
            raise ValueError("no v1 caster")
        batches = []
        for entry in group:
            document = orjson.loads(entry.inputs)
            batches.append(document.get("instances", document.get("inputs")))
        rows = [row for batch in batches for row in batch]
        return self.cast_instances(rows), [len(b) for b in batches], [self._v1_outputs(entry) for entry in group]

    def _append_group(self, target: _Columns, kind: str, group: list[Entry]) -> None:
        if kind in ("v1", "v2") and len(group) > 1:
            try:
                columns, counts, outputs = self._cast_batch(kind, group)
            except Exception:
                pass
            else:
                for entry, count, output in zip(group, counts, outputs, strict=True):
                    self._append_meta(target, entry, count)
                    self._append_outputs(target, output, count)
                    target.rows += count
                for column in self.columns:
                    values = columns.get(column)
                    target.inputs[column].extend(_python_list(values) if values is not None
                                                 else [None] * sum(counts))
                return
        for entry in group:
            cast, outputs = self._cast_one(entry)
            rows = len(next(iter(cast.values()))) if cast else 1
            self._append_meta(target, entry, rows)
            if cast:
                self._append_outputs(target, outputs, rows)
            target.rows += rows
            for column in self.columns:
                values = cast.get(column) if cast else None
                target.inputs[column].extend(_python_list(values) if values is not None else [None] * rows)

    def _append_meta(self, target: _Columns, entry: Entry, rows: int) -> None:
        stamp = datetime.fromtimestamp(entry.time, UTC)
        meta = target.meta
        meta["time"].extend([stamp] * rows)
        meta["request_id"].extend([entry.request_id] * rows)
        meta["row"].extend(range(rows))
        meta["model_name"].extend([self.model_name] * rows)
        meta["model_version"].extend([self.version] * rows)
        meta["protocol"].extend([entry.protocol] * rows)
        meta["latency_ms"].extend([entry.latency_ms] * rows)
        meta["error"].extend([entry.error] * rows)

    @staticmethod
    def _append_outputs(target: _Columns, outputs: Any, rows: int) -> None:
        """Per-row outputs of one entry whose rows start at ``target.rows`` (not yet advanced)."""
        for name, values in outputs or ():
            flat = values if isinstance(values, list) else _python_list(values)
            if len(flat) == rows:
                per_row = flat
            elif rows and len(flat) % rows == 0:
                width = len(flat) // rows
                per_row = [flat[i * width:(i + 1) * width] for i in range(rows)]
            else:
                continue
            series = target.outputs.setdefault(name, [])
            series.extend([None] * (target.rows - len(series)))
            series.extend(per_row)

    def _v1(self, entry: Entry) -> tuple[dict[str, Any] | None, list[tuple[str, Any]]]:
        """A v1 request: ``inputs`` is the request body and ``outputs`` the answer body (parsed here, off the
        request path)."""
        import orjson

        if self.cast_instances is None:
            return None, []
        document = orjson.loads(entry.inputs)
        instances = document.get("instances", document.get("inputs")) if isinstance(document, dict) else None
        return self.cast_instances(instances), self._v1_outputs(entry)

    @staticmethod
    def _v1_outputs(entry: Entry) -> list[tuple[str, Any]]:
        import orjson

        answer = orjson.loads(entry.outputs) if isinstance(entry.outputs, (bytes, bytearray)) else {}
        predictions = answer.get("predictions") or []
        names = list(predictions[0]) if predictions and isinstance(predictions[0], dict) else []
        return [(name, [_v1_value(p.get(name)) for p in predictions]) for name in names]

    def _write(self, day: str, table: Any) -> None:
        name = f"part-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        key = partition_key(self.model_name, day, self.version, name)
        if self._s3 is not None:
            from tollgate.s3 import parse_s3_uri

            location = parse_s3_uri(self.log_uri)
            body = io.BytesIO()
            write_parquet(table, body)
            payload = body.getvalue()
            # One PUT: the object is visible whole or not at all.
            self._s3.put_object(location.bucket, "/".join(p for p in (location.key, key) if p), io.BytesIO(payload),
                                len(payload), content_type="application/vnd.apache.parquet")
        else:
            final = Path(self.log_uri) / key
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = final.parent / f".{name}.tmp"
            try:
                with open(temporary, "wb") as sink:
                    write_parquet(table, sink)
                    sink.flush()
                    os.fsync(sink.fileno())
                os.replace(temporary, final)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        self.files_written += 1
        self.counters.written.inc(table.num_rows)


def write_parquet(table: Any, sink: Any) -> None:
    """Write ``table`` to an open binary file or buffer (one place, so a test can crash inside it)."""
    import pyarrow.parquet as pq

    pq.write_table(table, sink)


def _python_list(values: Any) -> list[Any]:
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            return [None if v != v else v for v in values.tolist()]
        return values.tolist()
    return list(values)


def _v1_value(value: Any) -> Any:
    """One row's output of a v1 answer as the log stores it.

    A multiclass v1 answer keys each row's probabilities by class, in the model's class order;
    REST v2 and gRPC carry the same numbers as an [n, k] tensor. Both are logged as a list per
    row, so the column has one type in every file of the log whatever protocol served it.
    """
    return list(value.values()) if isinstance(value, dict) else value


def _array(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed Python types in one column (e.g. a categorical that carried numbers): keep them as text.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def from_config(monitoring: Any, model: Any) -> PredictionLog | None:
    """A started :class:`PredictionLog` for ``model`` when ``monitoring.log_uri`` is set, else None."""
    if not getattr(monitoring, "log_uri", None):
        return None
    schema = model.schema
    log = PredictionLog(monitoring.log_uri, model.name, str(getattr(model, "version", "") or ""),
                        [c.name for c in schema.columns], schema.columns_from_tensors,
                        sample_rate=monitoring.sample_rate, flush_records=monitoring.flush_records,
                        flush_seconds=monitoring.flush_seconds, queue_size=monitoring.queue_size,
                        cast_instances=schema.columns_from_instances)
    return log.start()


# -- reading ------------------------------------------------------------------------------------


def _day_of(key: str) -> str | None:
    for part in key.split("/"):
        if part.startswith("date="):
            return part[5:]
    return None


def list_log_files(log_uri: str, model_name: str, since: datetime | None = None,
                   until: datetime | None = None) -> list[str]:
    """Complete log files of ``model_name`` whose date partition overlaps [since, until] (URIs or paths).

    Temporary names (a leading ``.``) are never listed: they are files still being written
    or left by a crash mid-flush.
    """
    first = since.strftime("%Y-%m-%d") if since else None
    last = until.strftime("%Y-%m-%d") if until else None
    keys: list[str] = []
    log_uri = log_uri.rstrip("/")
    if log_uri.startswith("s3://"):
        from tollgate.s3 import client_from_env, parse_s3_uri

        location = parse_s3_uri(log_uri)
        prefix = "/".join(p for p in (location.key, model_name) if p) + "/"
        client = client_from_env()
        for item in client.list_objects(location.bucket, prefix=prefix, recursive=True):
            keys.append(f"s3://{location.bucket}/{item.object_name}")
    else:
        root = Path(log_uri) / model_name
        if root.is_dir():
            keys = [str(p) for p in root.rglob("*.parquet")]
    selected = []
    for key in sorted(keys):
        name = key.rsplit("/", 1)[-1]
        day = _day_of(key)
        if name.startswith(".") or day is None:
            continue
        if (first and day < first) or (last and day > last):
            continue
        selected.append(key)
    return selected


def read_log(log_uri: str, model_name: str, since: datetime | None = None, until: datetime | None = None) -> Any:
    """The prediction log of ``model_name`` in [since, until) as one pandas DataFrame (empty when none)."""
    import pandas as pd
    import pyarrow.parquet as pq

    tables = []
    client = None
    for key in list_log_files(log_uri, model_name, since, until):
        if key.startswith("s3://"):
            from tollgate.s3 import client_from_env, parse_s3_uri

            client = client or client_from_env()
            location = parse_s3_uri(key)
            response = client.get_object(location.bucket, location.key)
            try:
                data = response.read()
            finally:
                response.close()
                response.release_conn()
            tables.append(pq.read_table(io.BytesIO(data)))
        else:
            tables.append(pq.read_table(key))
    if not tables:
        return pd.DataFrame(columns=list(META_COLUMNS))
    frame = _concat(tables).to_pandas()
    if since is not None:
        frame = frame[frame["time"] >= pd.Timestamp(since)]
    if until is not None:
        frame = frame[frame["time"] < pd.Timestamp(until)]
    return frame.reset_index(drop=True)


def _concat(tables: list[Any]) -> Any:
    """One table from log files whose column types may differ.

    A column that is all null in one file takes the type of the others. A column whose types
    truly differ between files (a file written by an older Tollgate, or a categorical logged as
    numbers in one flush and as text in another) is read as text in every file, as the writer
    itself does for mixed values within one flush (:func:`_array`).
    """
    import pyarrow as pa

    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    types: dict[str, set[Any]] = collections.defaultdict(set)
    for table in tables:
        for field in table.schema:
            if not pa.types.is_null(field.type):
                types[field.name].add(field.type)
    conflicting = {name for name, kinds in types.items() if len(kinds) > 1}
    as_text = []
    for table in tables:
        for name in conflicting & set(table.column_names):
            values = [None if v is None else str(v) for v in table.column(name).to_pylist()]
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, type=pa.string()))
        as_text.append(table)
    return pa.concat_tables(as_text, promote_options="permissive")
