"""Where the time of `make run` goes: every task process of the local DAG, phase by phase.

    .venv/bin/python bench/task_profile.py                 # two runs on built-in data (the second has a champion)
    .venv/bin/python bench/task_profile.py --rows 200000 --runs 1

Runs ``tollgate run --json`` as `make run` does, in a scratch directory with its own
registry, with ``bench/task_probe`` on PYTHONPATH: its ``sitecustomize`` records, in every
task process, the interpreter start-up, kfp's executor, the component's imports, its
DataFrame artifact reads and writes, the rest of its work and the writing of its outputs
(wall and CPU seconds each; see that module). Prints one Markdown table per run; CPU
seconds are the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "task_probe"
PHASES = ("interpreter", "kfp", "import", "read", "work", "write", "outputs")
ORDER = ("retrain-check", "ingest", "validate", "preprocess", "train", "select", "evaluate", "gate", "infra-validate",
         "register", "deploy", "report")


def run_once(workdir: Path, rows: int, extra: list[str]) -> dict:
    """One `tollgate run` with the probe; returns its summary, wall time and the probe records."""
    probe_dir = Path(tempfile.mkdtemp(prefix="probe-", dir=workdir))
    env = {**os.environ, "TOLLGATE_TASK_PROBE": str(probe_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROBE), os.environ.get("PYTHONPATH")]))}
    command = [str(Path(sys.executable).parent / "tollgate"), "run", "--json", "--rows", str(rows),
               "--registry", str(workdir / "registry"), *extra]
    started = time.time()
    finished = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    wall = time.time() - started
    if finished.returncode != 0:
        raise SystemExit(f"tollgate run failed ({finished.returncode}):\n{finished.stdout[-2000:]}\n"
                         f"{finished.stderr[-2000:]}")
    records = [json.loads(path.read_text()) for path in probe_dir.glob("*.json")]
    return {"summary": json.loads(finished.stdout), "wall": wall, "started": started, "records": records}


def _task_step(name: str) -> str:
    # ParallelFor iterations are named like the task plus an index suffix in some kfp versions.
    for step in ORDER:
        if name == step or name.startswith(f"{step}-") and name[len(step) + 1:].isdigit():
            return step
    return name


def breakdown(result: dict) -> dict:
    """Per step: task count, step wall, and the mean per task of each phase (wall, CPU)."""
    tasks = [r for r in result["records"] if r["role"] == "task"]
    parent = next(r for r in result["records"] if r["role"] == "parent")
    per_step: dict[str, list[dict]] = defaultdict(list)
    for record in tasks:
        per_step[_task_step(record["task"])].append(record)
    step_wall = {row["step"]: row["seconds"] for row in result["summary"]["steps"]}
    rows = []
    for step in sorted(per_step, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER)):
        records = per_step[step]
        row = {"step": step, "tasks": len(records), "step_wall": step_wall.get(step)}
        for phase in PHASES:
            row[phase] = (sum(r["phases"].get(phase, {}).get("wall", 0.0) for r in records) / len(records),
                          sum(r["phases"].get(phase, {}).get("cpu", 0.0) for r in records) / len(records))
        row["cpu_total"] = sum(r["cpu_self"] + r["cpu_children"] for r in records) / len(records)
        # Kernel time (mostly faulting in fresh memory): what a fresh process pays and a long-lived one reuses.
        row["system"] = sum(r["system_self"] + r["system_children"] for r in records) / len(records)
        row["heavy"] = sorted({m for r in records for m in r["modules"]} & {"pandas", "sklearn", "matplotlib",
                                                                            "scipy", "onnxruntime", "pyarrow"})
        rows.append(row)
    first_task = min(r["started"] for r in tasks)
    last_task = max(r["ended"] for r in tasks)
    return {"rows": rows, "wall": result["wall"],
            "parent_before_first_task": first_task - parent["started"],
            "parent_after_last_task": parent["ended"] - last_task,
            "parent_imports_before_dag": parent["phases"]["interpreter"]["wall"],
            "task_cpu": sum(r["cpu_self"] + r["cpu_children"] for r in tasks),
            "parent_cpu": parent["cpu_self"], "tasks": len(tasks)}


def render(number: int, data: dict) -> str:
    lines = [f"\n#### Run {number}: {data['wall']:.1f} s wall, {data['tasks']} task processes, "
             f"task CPU {data['task_cpu']:.1f} s, runner CPU {data['parent_cpu']:.1f} s\n",
             "Per task, mean of the step's tasks, wall s (CPU s):\n",
             "| step | tasks | step wall | " + " | ".join(PHASES) + " | heavy modules loaded |",
             "|---|---:|---:|" + "---:|" * len(PHASES) + "---|"]
    for row in data["rows"]:
        cells = " | ".join(f"{row[p][0]:.2f} ({row[p][1]:.2f})" for p in PHASES)
        wall = f"{row['step_wall']:.2f}" if row["step_wall"] is not None else "-"
        lines.append(f"| {row['step']} | {row['tasks']} | {wall} | {cells} | {', '.join(row['heavy']) or '-'} |")
    lines.append("\nSystem (kernel) CPU s per task, mean: " + ", ".join(
        f"{row['step']} {row['system']:.2f}" for row in data["rows"]) + "; all task processes "
        f"{sum(row['system'] * row['tasks'] for row in data['rows']):.1f} s.")
    lines.append(f"\nRunner: {data['parent_before_first_task']:.2f} s from `tollgate run` start to the first task "
                 f"process, {data['parent_after_last_task']:.2f} s from the last task's exit to the end.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="Built-in rows (make run's default is 20,000).")
    parser.add_argument("--runs", type=int, default=2, help="Consecutive runs on one registry (2: with a champion).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch directory and print its path.")
    parser.add_argument("--json", type=Path, help="Also write the raw breakdowns here.")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-task-profile-"))
    try:
        results = []
        for number in range(1, args.runs + 1):
            data = breakdown(run_once(workdir, args.rows, []))
            results.append(data)
            print(render(number, data), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        if args.keep:
            print(f"\nscratch directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
