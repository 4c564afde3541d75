"""Reading and writing what DAG steps hand each other: tables and typed records.

Every component and ``bench/pipeline.py`` go through these functions, so the on-disk
format of the intermediate splits is decided in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

    from tollgate.records import _Record

R = TypeVar("R", bound="_Record")


# Tables between steps are Arrow IPC files (Feather v2) with LZ4-compressed buffers. Each is
# written once and read by up to eight tasks (every train candidate reads all three splits), so
# reading speed matters most. At 600,000 rows of the built-in data (bench/frame_format.py,
# docs/benchmarks.md) Parquet writes in 0.60 s and reads in 0.30 s; this format writes in 0.34 s
# and reads in 0.13 s (memory-mapped), for files 3x the size (57 MiB vs 19 MiB). Uncompressed
# IPC reads in 0.07 s but at 7x Parquet's size, which costs more than it saves once artifacts
# travel through object storage in the cluster.
FRAME_COMPRESSION = "lz4"
_ARROW_FILE_MAGIC = b"ARROW1"


def write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table artifact: an Arrow IPC file, LZ4-compressed, without the index (dtypes are kept)."""
    import pyarrow as pa
    import pyarrow.feather as feather

    feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), str(path), compression=FRAME_COMPRESSION)


def read_frame(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table artifact, memory-mapped; ``columns`` decodes only those columns.

    Parquet artifacts (runs from before the Arrow format, or a Parquet file handed to a
    step through ``dsl.importer``) are recognised by their first bytes and read as Parquet.
    """
    with open(path, "rb") as handle:
        magic = handle.read(len(_ARROW_FILE_MAGIC))
    if magic != _ARROW_FILE_MAGIC:
        import pandas as pd

        return pd.read_parquet(path, columns=columns)
    import pyarrow.feather as feather

    return feather.read_table(str(path), columns=columns, memory_map=True).to_pandas()


def write_record(record: _Record, path: str | Path) -> None:
    """Write a typed record (see :mod:`tollgate.records`) as tagged, versioned JSON."""
    Path(path).write_text(record.to_json())


def read_record(kind: type[R], path: str | Path) -> R:
    """Read a typed record of ``kind`` (older formats are upgraded; newer ones refused)."""
    return kind.from_json(Path(path).read_text())


def write_json(value: Any, path: str | Path) -> None:
    """Write plain JSON (schemas and reports that are not step-to-step records)."""
    import json

    Path(path).write_text(json.dumps(value, indent=2, default=str))


def read_json(path: str | Path) -> Any:
    import json

    return json.loads(Path(path).read_text())
