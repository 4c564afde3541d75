"""Benchmark: a train task's imports after the machine sat idle, with the local runner keeping
the files earlier tasks loaded resident (tollgate/resident.py) and without.

    .venv/bin/python bench/page_cache.py                 # idle 90 s, 2 rounds (~7 min)
    .venv/bin/python bench/page_cache.py --idle 120 --rounds 3

Each round, for each setting (alternating): one process imports what a train task imports and
lists its files, as a task does at exit; the runner's keeper holds them (or, without it,
nothing does); the machine idles ``--idle`` seconds, as it does while a long candidate trains;
then a fresh process imports the same set and reports wall time, CPU time and the bytes it
read from storage (``/proc/self/io``). The peer is the same import with the files held; the
floor is the first process's import, measured right after the previous import so nothing
was reclaimed. On a host that keeps idle page cache, both settings read nothing and the
ratio is 1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tollgate.resident import LOADED_FILES_DIR_ENV, ResidentFiles  # noqa: E402

# What a train task loads while it fits and exports (tests/test_import_cost.py: ALLOWED["train"],
# plus skl2onnx and onnxruntime, which load when a candidate exports).
TRAIN_IMPORTS = ("import pandas, pyarrow, sklearn.ensemble, sklearn.linear_model, scipy.stats, skl2onnx, onnxruntime\n"
                 "import tollgate.steps.train, tollgate.steps.evaluate\n")
PROBE = ("import json, resource, time\n"
         "wall, cpu = time.perf_counter(), time.process_time()\n"
         + TRAIN_IMPORTS +
         "io = dict(line.split(': ') for line in open('/proc/self/io').read().splitlines())\n"
         "print(json.dumps({'wall': time.perf_counter() - wall, 'cpu': time.process_time() - cpu,"
         " 'read_mb': int(io['read_bytes']) / 1e6}))\n")


def import_once(lists: Path | None) -> dict[str, float]:
    """A fresh task-like process importing the train set (listing its files at exit when ``lists``)."""
    env = {**os.environ, "_KFP_RUNTIME": "true"}
    env.pop(LOADED_FILES_DIR_ENV, None)
    if lists is not None:
        env[LOADED_FILES_DIR_ENV] = str(lists)
    finished = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True,
                              check=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def one_round(held: bool, idle: float, workdir: Path) -> dict[str, float]:
    lists = workdir / f"lists-{time.monotonic_ns()}"
    with ResidentFiles(lists, interval=0.2, enabled=held) as keeper:
        first = import_once(lists if held else None)
        if held:
            deadline = time.monotonic() + 10
            while keeper.bytes_held == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
        time.sleep(idle)
        after = import_once(None)
        return {"first_wall": first["wall"], **after, "held_mb": keeper.bytes_held / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=90.0, help="Seconds idle between the two imports.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds per setting (alternating).")
    args = parser.parse_args()
    if not ResidentFiles.supported():
        raise SystemExit("needs Linux 5.14 or later (/proc/self/maps, mincore, MADV_POPULATE_READ)")
    print(f"page-cache benchmark: idle {args.idle:.0f} s, {args.rounds} rounds per setting, "
          f"load average {os.getloadavg()[0]:.1f} at start\n")
    print("| round | files held | import before idling, wall s | after idling: wall s | CPU s | read from storage MB |"
          " held MB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as workdir:
        for number in range(1, args.rounds + 1):
            for held in (False, True):
                result = one_round(held, args.idle, Path(workdir))
                results[held].append(result)
                print(f"| {number} | {'yes' if held else 'no'} | {result['first_wall']:.2f} | {result['wall']:.2f} |"
                      f" {result['cpu']:.2f} | {result['read_mb']:.1f} | {result['held_mb']:.0f} |", flush=True)
    walls = {held: statistics.mean(r["wall"] for r in rows) for held, rows in results.items()}
    floor = statistics.mean(r["first_wall"] for rows in results.values() for r in rows)
    print(f"\nimport after idling, mean wall: not held {walls[False]:.2f} s, held {walls[True]:.2f} s "
          f"(ratio not held / held {walls[False] / walls[True]:.2f}); floor (no idle) {floor:.2f} s, "
          f"held / floor {walls[True] / floor:.2f}")


if __name__ == "__main__":
    main()
