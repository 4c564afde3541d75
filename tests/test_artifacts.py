"""Tables between steps: Arrow IPC files (LZ4 when uploaded, plain on local disk) that keep every dtype, read column by column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from tests.conftest import written_with
from tollgate.artifacts import read_frame, write_frame
from tollgate.data.builtin import generate_applicants


@pytest.fixture
def mixed() -> pd.DataFrame:
    # Every kind of column a step hands on, with gaps, and an index write_frame must drop.
    return pd.DataFrame({
        "count": np.arange(6, dtype="int64"),
        "amount": [1.5, np.nan, 3.0, 4.25, 5.0, -1.0],
        "flag": [True, False, True, True, False, False],
        "text": ["rent", None, "own", "mortgage", "own", "rent"],
        "when": pd.date_range("2024-01-01", periods=6, freq="D"),
        "band": pd.Categorical(["a", "b", "a", None, "c", "b"]),
        "maybe": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
        "__label__": np.array([0, 1, 0, 1, 1, 0], dtype="int64"),
    }, index=[10, 11, 12, 13, 14, 15])


def test_a_frame_comes_back_as_written_without_its_index(tmp_path, mixed):
    write_frame(mixed, tmp_path / "split")
    assert_frame_equal(read_frame(tmp_path / "split"), mixed.reset_index(drop=True))


def test_it_reads_what_parquet_would_have_given(tmp_path, mixed):
    # The format moved from Parquet: a step must see the same frame either way.
    write_frame(mixed, tmp_path / "ipc")
    mixed.to_parquet(tmp_path / "parquet", index=False)
    assert_frame_equal(read_frame(tmp_path / "ipc"), pd.read_parquet(tmp_path / "parquet"))


@pytest.mark.parametrize("uri, codec", [
    ("minio://mlpipeline/v2/artifacts/run/ingest/raw", "lz4"),  # uploaded to object storage by KFP
    ("s3://bucket/artifacts/raw", "lz4"),
    ("gs://bucket/artifacts/raw", "lz4"),
    (None, "lz4"),  # the URI unknown: assume it travels
    ("", "lz4"),  # kfp's default Artifact.uri before one is assigned
    ("/home/me/.tollgate/runs/run-1/tollgate/ingest/raw", "uncompressed"),  # kfp.local: the file is the artifact
])
def test_compression_follows_where_the_artifact_goes(tmp_path, uri, codec):
    frame = generate_applicants(rows=5000, seed=3)
    write_frame(frame, tmp_path / "split", uri=uri)
    assert (tmp_path / "split").read_bytes()[:6] == b"ARROW1"
    assert written_with(tmp_path / "split") == codec
    assert_frame_equal(read_frame(tmp_path / "split"), frame)


def test_lz4_makes_the_uploaded_file_smaller(tmp_path):
    frame = generate_applicants(rows=5000, seed=3)
    write_frame(frame, tmp_path / "lz4", uri="minio://mlpipeline/raw")
    write_frame(frame, tmp_path / "plain", uri=str(tmp_path / "plain"))
    assert (tmp_path / "lz4").stat().st_size < 0.7 * (tmp_path / "plain").stat().st_size


def test_columns_reads_only_those_in_that_order(tmp_path, mixed):
    write_frame(mixed, tmp_path / "split")
    part = read_frame(tmp_path / "split", columns=["text", "count"])
    assert part.columns.tolist() == ["text", "count"]
    assert_frame_equal(part, mixed.reset_index(drop=True)[["text", "count"]])


def test_a_parquet_artifact_is_still_read(tmp_path, mixed):
    # Runs from before the Arrow format, and Parquet files handed to a step through dsl.importer.
    mixed.to_parquet(tmp_path / "old", index=False)
    assert_frame_equal(read_frame(tmp_path / "old", columns=["amount", "band"]),
                       mixed.reset_index(drop=True)[["amount", "band"]])


def test_the_uploaded_schemes_are_kfps_remote_prefixes():
    # artifacts.py writes them out rather than import kfp's internal enum; this pins the copy.
    from kfp.dsl.types.artifact_types import RemotePrefix

    from tollgate.artifacts import _UPLOADED_URI_PREFIXES

    assert set(_UPLOADED_URI_PREFIXES) == {prefix.value for prefix in RemotePrefix}
