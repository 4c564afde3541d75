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


def write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table artifact (Parquet, without the index)."""
    frame.to_parquet(path, index=False)


def read_frame(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table artifact; ``columns`` reads only those (Parquet is columnar: the others are never decoded)."""
    import pandas as pd

    return pd.read_parquet(path, columns=columns)


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
