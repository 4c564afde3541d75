"""Benchmark: the table format between DAG steps (tollgate/artifacts.py).

    .venv/bin/python bench/frame_format.py                # 600,000 rows (a 1M-row run's train split)
    .venv/bin/python bench/frame_format.py --rows 1000000 # a 1M-row run's raw table
    .venv/bin/python bench/frame_format.py --rows 200000

Writes the built-in data once per format and reads it back (best of --repeats), in this
process: Parquet (snappy, what the splits used to be), Arrow IPC uncompressed (what write_frame
writes for kfp.local, where the file is the artifact), Arrow IPC LZ4 (what it writes for an
artifact KFP uploads to object storage) and Arrow IPC zstd. Every train task reads all three splits,
so the read column is the one that is paid most often.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def best_of(repeats: int, action) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=600_000, help="Rows of built-in data.")
    parser.add_argument("--repeats", type=int, default=3, help="Best of this many writes and reads.")
    args = parser.parse_args()

    import pandas as pd
    import pyarrow as pa
    import pyarrow.feather as feather

    from tollgate.artifacts import read_frame
    from tollgate.data.builtin import generate_applicants

    frame = generate_applicants(rows=args.rows, seed=1)
    formats = {
        "Parquet (snappy)": (lambda p: frame.to_parquet(p, index=False), lambda p: pd.read_parquet(p)),
        **{f"Arrow IPC {name}": (
            lambda p, c=codec: feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), str(p),
                                                     compression=c),
            lambda p: read_frame(p))
           for name, codec in (("uncompressed (write_frame, local disk)", "uncompressed"),
                               ("LZ4 (write_frame, uploaded)", "lz4"), ("zstd", "zstd"))},
    }
    print(f"{args.rows:,} rows x {frame.shape[1]} columns, best of {args.repeats}\n")
    print("| format | write s | read s | size MiB |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (write, read) in formats.items():
            path = Path(tmp) / name.replace(" ", "_")
            written = best_of(args.repeats, lambda w=write, p=path: w(p))
            loaded = best_of(args.repeats, lambda r=read, p=path: r(p))
            assert read(path).equals(frame)
            print(f"| {name} | {written:.3f} | {loaded:.3f} | {path.stat().st_size / 2**20:.1f} |")


if __name__ == "__main__":
    main()
