"""Benchmark: one train task's cost in a fresh process, with numpy's huge-page advice on and off.

    .venv/bin/python bench/train_task.py                       # 1,000,000 rows: logistic regression and HGB
    .venv/bin/python bench/train_task.py --rows 200000 --repeats 1

Writes the built-in data's three splits once (as the preprocess task does), then, for each
candidate and each ``NUMPY_MADVISE_HUGEPAGE`` value (``1``: numpy's default, ``0``: what
``TASK_ENVIRONMENT`` sets), starts a fresh interpreter that reads the splits and calls
``run_train`` exactly as the train component does, in the task's environment
(``TASK_ENVIRONMENT`` with the value under test, ``OMP_NUM_THREADS=1``). It prints the child's
wall, user and system seconds and minor faults (``wait4``), and the wall of two logistic
regressions started together (a wave of the train step on two cores). The settings alternate,
so a machine that slows down during the run does not favour one of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tollgate.steps.candidates import CandidateSpec, loop_items

CANDIDATES = {
    "logistic regression": CandidateSpec("logreg", "logistic_regression",
                                         {"max_iter": 1000, "C": 1.0, "random_state": 42}),
    "HistGradientBoosting": CandidateSpec("hgb", "hist_gradient_boosting",
                                          {"max_iter": 200, "early_stopping": True, "learning_rate": 0.05,
                                           "max_leaf_nodes": 31, "random_state": 42}),
}

# What the child runs: the train component's reads and its one step call, on the candidate's ParallelFor item.
CHILD = """
import json, sys
from tollgate.artifacts import read_frame, read_record
from tollgate.records import FeatureSpec
from tollgate.steps.candidates import grid_point
from tollgate.steps.train import run_train
work = sys.argv[1]
spec = read_record(FeatureSpec, f"{work}/features.json")
run_train(grid_point(json.loads(sys.argv[2])), read_frame(f"{work}/train.arrow"),
          read_frame(f"{work}/validation.arrow"), read_frame(f"{work}/test.arrow", columns=spec.columns), spec,
          sys.argv[3])
"""


def write_splits(rows: int, work: Path) -> None:
    """The built-in data's splits and feature spec, written as the ingest and preprocess tasks write them."""
    from tollgate.artifacts import read_table, write_frame, write_record, write_table
    from tollgate.config import load_config
    from tollgate.settings import IngestSettings, PreprocessSettings
    from tollgate.steps.ingest import run_ingest
    from tollgate.steps.preprocess import run_preprocess

    config = load_config(None, {"data.builtin.rows": rows})
    frame = run_ingest(IngestSettings.from_config(config), config.data.source).frame
    spec, plan = run_preprocess(frame, PreprocessSettings.from_config(config))
    write_frame(frame, work / "raw.arrow")
    raw = read_table(work / "raw.arrow")
    for name in ("train", "validation", "test"):
        write_table(plan.take_table(raw, name), work / f"{name}.arrow")
    write_record(spec, work / "features.json")


def environment(advise: str) -> dict[str, str]:
    from tollgate.pipelines.training import TASK_ENVIRONMENT

    return {**os.environ, **TASK_ENVIRONMENT, "NUMPY_MADVISE_HUGEPAGE": advise, "OMP_NUM_THREADS": "1"}


def start(work: Path, candidate: CandidateSpec, advise: str, out: Path) -> subprocess.Popen:
    import json

    (item,) = loop_items([candidate])
    return subprocess.Popen([sys.executable, "-c", CHILD, str(work), json.dumps(item), str(out)],
                            env=environment(advise))


def finish(process: subprocess.Popen) -> tuple[float, float, int]:
    """Wait for ``process``: its user and system seconds and minor faults."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"the train task failed with {process.returncode}")
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of built-in data.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each candidate under each setting.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="train-task-") as scratch:
        work = Path(scratch)
        write_splits(args.rows, work)
        print(f"{args.rows:,} rows; one fresh process per candidate (OMP_NUM_THREADS=1, the task's environment)\n")
        print("| candidate | NUMPY_MADVISE_HUGEPAGE | wall s | user s | system s | minor faults |")
        print("|---|---|---:|---:|---:|---:|")
        for label, candidate in CANDIDATES.items():
            for _ in range(args.repeats):
                for advise in ("1", "0"):
                    started = time.perf_counter()
                    user, system, faults = finish(start(work, candidate, advise, work / f"model-{advise}"))
                    print(f"| {label} | {advise} | {time.perf_counter() - started:.1f} | {user:.2f} | {system:.2f} | "
                          f"{faults:,} |", flush=True)
        print("\n| two logistic regressions at once | NUMPY_MADVISE_HUGEPAGE | pair wall s |")
        print("|---|---|---:|")
        for _ in range(args.repeats):
            for advise in ("1", "0"):
                started = time.perf_counter()
                pair = [start(work, CANDIDATES["logistic regression"], advise, work / f"pair-{advise}-{i}")
                        for i in range(2)]
                for process in pair:
                    finish(process)
                print(f"| a wave of two | {advise} | {time.perf_counter() - started:.1f} |", flush=True)


if __name__ == "__main__":
    main()
