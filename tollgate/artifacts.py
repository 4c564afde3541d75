"""Reading and writing what DAG steps hand each other: tables and typed records.

Every component goes through these functions, so the on-disk format of the intermediate
splits is decided in one place. (``bench/pipeline.py``'s plain script keeps its tables in
memory: what these functions cost is what it measures the DAG against.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from tollgate.records import _Record

R = TypeVar("R", bound="_Record")


# Tables between steps are Arrow IPC files (Feather v2), memory-mapped on read. Each is written
# once and read by up to eight tasks (every train candidate reads all three splits), so reading
# speed matters most. At 1,000,000 rows of the built-in data (bench/frame_format.py,
# docs/benchmarks.md) Parquet writes in 0.97 s and reads in 0.33 s (31 MiB); Arrow IPC with
# LZ4-compressed buffers writes in 0.59 s and reads in 0.22 s (96 MiB); uncompressed Arrow IPC
# writes in 0.43 s and reads in 0.10 s (210 MiB).
# Which of the two Arrow variants depends on where the file goes. In the cluster KFP uploads
# every output artifact to object storage and downloads it for each consumer, so bytes cost
# more than LZ4's CPU: LZ4. Under kfp.local (`tollgate run`, `make run`) the artifact *is* the
# file on this disk, read through the page cache: compression buys nothing, so none.
FRAME_COMPRESSION = "lz4"
# The URI schemes of artifacts that KFP uploads (kfp.dsl.types.artifact_types.RemotePrefix).
_UPLOADED_URI_PREFIXES = ("gs://", "minio://", "s3://", "oci://")
_ARROW_FILE_MAGIC = b"ARROW1"


def frame_compression(uri: str | None) -> str:
    """The compression of a table artifact at ``uri``: ``"lz4"`` when KFP uploads it to object
    storage (or the URI is unknown: ``None`` or empty), ``"uncompressed"`` when it stays a local
    file (kfp.local)."""
    if uri and not uri.startswith(_UPLOADED_URI_PREFIXES):
        return "uncompressed"
    return FRAME_COMPRESSION


def write_frame(frame: pd.DataFrame, path: str | Path, *, uri: str | None = None) -> None:
    """Write a table artifact: an Arrow IPC file without the index (dtypes are kept).

    ``uri`` is the artifact's URI (``artifact.uri``); it decides the compression
    (:func:`frame_compression`). Either way :func:`read_frame` reads the file.
    """
    import pyarrow as pa

    write_table(pa.Table.from_pandas(frame, preserve_index=False), path, uri=uri)


def write_table(table: pa.Table, path: str | Path, *, uri: str | None = None) -> None:
    """Write an Arrow table as a table artifact, compressed as :func:`write_frame` does.

    A table taken from one that :func:`read_table` read keeps its pandas metadata, so
    :func:`read_frame` gives back the dtypes the original frame had (nullable integers,
    categoricals, time zones).
    """
    import pyarrow.feather as feather

    feather.write_feather(table, str(path), compression=frame_compression(uri))


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a table artifact as an Arrow table, memory-mapped; ``columns`` reads only those columns.

    Parquet artifacts (runs from before the Arrow format, or a Parquet file handed to a
    step through ``dsl.importer``) are recognised by their first bytes and read as Parquet.
    """
    with open(path, "rb") as handle:
        magic = handle.read(len(_ARROW_FILE_MAGIC))
    if magic != _ARROW_FILE_MAGIC:
        import pyarrow.parquet as parquet

        return parquet.read_table(path, columns=columns)
    import pyarrow.feather as feather

    return feather.read_table(str(path), columns=columns, memory_map=True)


def read_frame(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table artifact as a DataFrame (:func:`read_table`, then pandas' conversion)."""
    return read_table(path, columns).to_pandas()


def write_record(record: _Record, path: str | Path) -> None:
    """Write a typed record (see :mod:`tollgate.records`) as tagged, versioned JSON."""
    Path(path).write_text(record.to_json())


def read_record(kind: type[R], path: str | Path) -> R:
    """Read a typed record of ``kind`` (older formats are upgraded; newer ones refused)."""
    return kind.from_json(Path(path).read_text())
