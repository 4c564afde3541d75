"""Benchmark: the local KFP DAG against a plain script calling the very same step functions.

    .venv/bin/python bench/pipeline.py                     # 20,000 rows: what `make run` does
    .venv/bin/python bench/pipeline.py --rows 1000000      # the large case (several minutes per side)
    .venv/bin/python bench/pipeline.py --rows 20000 --rows 1000000

Each side runs twice on its own fresh registry, each run a fresh process, the sides
interleaved (DAG, script, DAG, script): the first run has no champion, the second scores the
champion the first one promoted (what `make run` twice does). The DAG side is `tollgate run
--json`, exactly as `make run` starts it. The script side (``--side script``, also a fresh
interpreter per run) calls the same entry points the components call
(``tollgate.steps.<step>.run_<step>``) with the same per-task settings, but keeps every table
in memory and trains the candidates in a pool of ``train.parallelism`` forked workers (threads
per candidate as in the DAG), in the environment the DAG gives its tasks (``TASK_ENVIRONMENT``:
glibc's malloc tunables). The ratio of the two wall times is what the DAG costs: a process per
task and the tables written and read between tasks. Every run, of either side, starts right
after 5 GiB were touched and freed (``--settle-gib``): this VM makes memory that sat idle slow
to touch again, which otherwise fell on whichever run came first (see :func:`settle_memory`).

Peak memory, per side: the largest process (``getrusage`` of the run's process and every
process it waited for, via ``wait4``) and the process tree (the sum of all processes alive
at once, sampled every 50 ms).

Targets (issue 13, 2 cores): `make run` <= 18 s; DAG / script <= 1.10 at 1,000,000 rows;
peak RSS <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollgate.steps.candidates import CandidateSpec

TARGET_MAKE_RUN_SECONDS = 18.0
TARGET_RATIO_1M = 1.10
TARGET_RSS_GIB = 4.0
BENCH = Path(__file__).resolve()


# ---------------------------------------------------------------- the script side (one run per process)

_POOL_STATE: dict[str, Any] = {}  # what forked training workers inherit instead of pickling the splits


@contextmanager
def _timed(times: dict[str, float], name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.perf_counter() - started


def _limit_threads(threads: int) -> None:
    # The DAG sets OMP_NUM_THREADS (and the BLAS equivalents) on each training task.
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


def _train_one(grid_point: CandidateSpec) -> str:
    from tollgate.steps.train import run_train

    state = _POOL_STATE
    model_dir = Path(state["workdir"]) / "candidates" / grid_point.candidate_id
    # As the train component: the test split only with the model's columns (the reference probabilities).
    run_train(grid_point, state["train"], state["validation"], state["test"][state["spec"].columns], state["spec"],
              model_dir)
    return str(model_dir)


def run_script(rows: int, registry_uri: str, workdir: Path) -> dict[str, Any]:
    """One training run as a plain script: the components' step calls in DAG order, tables in memory."""
    import multiprocessing

    from tollgate.config import load_config
    from tollgate.registry import open_registry
    from tollgate.settings import (
        DeploySettings,
        EvaluateSettings,
        InfraValidateSettings,
        IngestSettings,
        PreprocessSettings,
        ValidateSettings,
    )
    from tollgate.steps.candidates import config_grid
    from tollgate.steps.deploy import run_deploy
    from tollgate.steps.evaluate import run_evaluate
    from tollgate.steps.gate import GatePolicy, run_gate
    from tollgate.steps.infra_validate import run_infra_validate
    from tollgate.steps.ingest import run_ingest
    from tollgate.steps.preprocess import run_preprocess
    from tollgate.steps.register import run_register
    from tollgate.steps.report import run_report
    from tollgate.steps.select import run_select
    from tollgate.steps.validate import run_validate

    config = load_config(None, {"data.builtin.rows": rows, "registry.uri": registry_uri})
    registry = open_registry(config.registry.uri)
    name, run_id = config.model_name, f"script-{os.getpid()}"
    times: dict[str, float] = {}
    with _timed(times, "ingest"):
        ingested = run_ingest(IngestSettings.from_config(config), config.data.source, "")
    with _timed(times, "validate"):
        checks, data_schema = run_validate(ingested.frame, ValidateSettings.from_config(config), registry, name)
        if not checks.passed:
            raise SystemExit(f"validation blocked the run: {checks.failure_message()}")
    with _timed(times, "preprocess"):
        spec, plan = run_preprocess(ingested.frame, PreprocessSettings.from_config(config))
        splits = plan.take(ingested.frame)  # in memory: DataFrames, as training needs them
    grid = config_grid(config)
    with _timed(times, "train"):
        _POOL_STATE.update(train=splits.train, validation=splits.validation, test=splits.test, spec=spec,
                           workdir=str(workdir))
        context = multiprocessing.get_context("fork")
        with context.Pool(config.train.parallelism, initializer=_limit_threads,
                          initargs=(config.train.threads_per_candidate,)) as pool:
            trained_dirs = pool.map(_train_one, grid, chunksize=1)
    with _timed(times, "select"):
        best_dir = str(workdir / "best")
        selection = run_select(trained_dirs, config.train.selection_metric,
                               config.train.multiclass_selection_metric, best_dir)
    with _timed(times, "evaluate"):
        evaluation = run_evaluate(best_dir, selection, spec, splits.test, EvaluateSettings.from_config(config),
                                  registry, name)
    with _timed(times, "gate"):
        decision = run_gate(evaluation, GatePolicy.from_config(config.gate.model_dump()))
    with _timed(times, "report"):
        (workdir / "report.html").write_text(run_report(name, run_id, ingested.lineage(), checks, evaluation,
                                                         decision))
    if decision.passed:
        with _timed(times, "infra-validate"):
            infra = run_infra_validate(best_dir, splits.test, spec, InfraValidateSettings.from_config(config),
                                       log_dir=workdir)
            if not infra.passed:
                raise SystemExit(f"infra validation failed: {infra.reason}")
        with _timed(times, "register"):
            version = run_register(registry, name, best_dir, spec, evaluation, decision,
                                   data=ingested.lineage(),
                                   data_schema=data_schema, run_id=run_id)
        with _timed(times, "deploy"):
            run_deploy(DeploySettings.from_config(config), registry, name, version.version)
    return {"steps": times, "passed": decision.passed,
            "champion": evaluation.champion.version if evaluation.champion else None}


# ---------------------------------------------------------------- measuring a run from outside


class TreeRssSampler:
    """Samples the summed RSS of a process and all its descendants every 50 ms."""

    def __init__(self, pid: int, interval: float = 0.05):
        import psutil

        self._root = psutil.Process(pid)
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                processes = []
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` to completion: wall seconds, its JSON output, peak RSS (largest process, tree)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, text=True, env=env)
        with TreeRssSampler(process.pid) as sampler:
            # wait4: this child's resource usage, including every process it waited for.
            _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({process.returncode}):\n{stdout[-3000:]}\n"
                         f"{stderr[-3000:]}")
    return {"wall": wall, "output": json.loads(stdout[stdout.index("{"):]),
            "largest_process_gib": usage.ru_maxrss * 1024 / 2**30, "tree_gib": sampler.peak_bytes / 2**30}


def settle_memory(gib: float) -> float:
    """Touch ``gib`` GiB in a child process that then exits; returns the seconds that took.

    This VM hands memory that stays free for a few seconds back to its host, and the next
    process to touch it pays for getting it back: about 2.3 s per GiB after 20 s idle, against
    0.1-0.4 s per GiB for memory another process freed a moment before (docs/benchmarks.md).
    Without this the first run of the benchmark (always the DAG's run 1) paid that for its
    whole footprint, while every later run reused what the run before it had just freed. Called
    right before every measured run, of either side, it gives each the same start: ``gib`` of
    memory freed a moment ago.
    """
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import numpy; numpy.ones({int(gib * 2**30) // 8})"], check=True)
    return time.perf_counter() - started


def _run_side(side: str, rows: int, workdir: Path, number: int, settle_gib: float = 0.0) -> dict[str, Any]:
    """Run ``number`` of one side (a fresh process) on that side's registry in ``workdir``,
    right after :func:`settle_memory` (``settle_gib`` 0: without)."""
    if side == "dag":
        command = [str(Path(sys.executable).parent / "tollgate"), "run", "--json", "--rows", str(rows),
                   "--registry", str(workdir / "registry")]
        env = None  # the DAG sets TASK_ENVIRONMENT on each of its tasks
    else:
        command = [sys.executable, str(BENCH), "--side", "script", "--rows", str(rows),
                   "--registry", str(workdir / "registry"), "--workdir", str(workdir / f"script-{number}")]
        # The script process does the same work as the tasks: same environment (glibc's malloc tunables).
        from tollgate.pipelines.training import TASK_ENVIRONMENT

        env = {**os.environ, **TASK_ENVIRONMENT}
    settled = settle_memory(settle_gib) if settle_gib else 0.0
    result = measure(command, workdir, env)
    output = result.pop("output")
    if side == "dag":
        if not output.get("succeeded"):
            raise SystemExit(f"the DAG run failed: {output.get('error')}")
        result["steps"] = {row["step"]: row["seconds"] for row in output["steps"]}
        result["champion"] = (output.get("champion") or {}).get("version")
    else:
        result["steps"], result["champion"] = output["steps"], output["champion"]
    print(f"  {rows:>9,} rows  {side:<6} run {number}: {result['wall']:6.1f} s  largest process "
          f"{result['largest_process_gib']:.2f} GiB  tree {result['tree_gib']:.2f} GiB"
          + (f"  (memory settled: {settle_gib:g} GiB in {settled:.1f} s)" if settle_gib else ""), flush=True)
    return result


def bench_sides(rows: int, runs: int, settle_gib: float = 0.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``runs`` consecutive runs of each side, each side on its own fresh registry, each run a fresh
    process, the two sides interleaved (DAG run 1, script run 1, DAG run 2, ...): on a shared
    machine the speed drifts over minutes, and interleaving spreads that drift over both sides.
    Each run starts right after :func:`settle_memory` (``settle_gib``; 0: without)."""
    workdirs = {side: Path(tempfile.mkdtemp(prefix=f"tollgate-bench-{side}-")) for side in ("dag", "script")}
    try:
        results: dict[str, list[dict[str, Any]]] = {"dag": [], "script": []}
        for number in range(1, runs + 1):
            for side in ("dag", "script"):
                results[side].append(_run_side(side, rows, workdirs[side], number, settle_gib))
        return results["dag"], results["script"]
    finally:
        for workdir in workdirs.values():
            shutil.rmtree(workdir, ignore_errors=True)


STEPS = ("ingest", "validate", "preprocess", "train", "select", "evaluate", "gate", "report", "infra-validate",
         "register", "deploy")


def render(rows: int, dag: list[dict[str, Any]], script: list[dict[str, Any]]) -> str:
    """Markdown: per-step seconds of each run, totals, the DAG/script ratio and peak memory."""
    lines = [f"\n#### {rows:,} rows\n",
             "| step | " + " | ".join(f"DAG run {i} s | script run {i} s" for i in range(1, len(dag) + 1)) + " |",
             "|---|" + "---:|" * (2 * len(dag))]
    for step in STEPS:
        cells = []
        for d, s in zip(dag, script, strict=True):
            cells += [f"{d['steps'][step]:.2f}" if step in d["steps"] else "-",
                      f"{s['steps'][step]:.2f}" if step in s["steps"] else "-"]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines.append("| **wall (process start to exit)** | " + " | ".join(
        f"**{d['wall']:.1f}** | **{s['wall']:.1f}**" for d, s in zip(dag, script, strict=True)) + " |")
    lines.append("| peak RSS, largest process GiB | " + " | ".join(
        f"{d['largest_process_gib']:.2f} | {s['largest_process_gib']:.2f}" for d, s in zip(dag, script, strict=True))
        + " |")
    lines.append("| peak RSS, process tree GiB | " + " | ".join(
        f"{d['tree_gib']:.2f} | {s['tree_gib']:.2f}" for d, s in zip(dag, script, strict=True)) + " |")
    ratios = [d["wall"] / s["wall"] for d, s in zip(dag, script, strict=True)]
    total = sum(d["wall"] for d in dag) / sum(s["wall"] for s in script)
    lines.append("\nDAG / script: " + ", ".join(f"run {i} **{r:.3f}**" for i, r in enumerate(ratios, 1))
                 + f"; all runs **{total:.3f}** (overhead {100 * (total - 1):+.1f}%).")
    verdicts = []
    if rows == 20_000:
        slowest = max(d["wall"] for d in dag)
        verdicts.append(f"`make run` (slowest DAG run at 20,000 rows): {slowest:.1f} s, target <= "
                        f"{TARGET_MAKE_RUN_SECONDS:.0f} s: {'met' if slowest <= TARGET_MAKE_RUN_SECONDS else 'MISSED'}")
    if rows >= 1_000_000:
        verdicts.append(f"DAG / script at {rows:,} rows: {total:.3f}, target <= {TARGET_RATIO_1M:.2f}: "
                        f"{'met' if total <= TARGET_RATIO_1M else 'MISSED'}")
    peak = max(r["tree_gib"] for r in dag)
    verdicts.append(f"peak RSS of the DAG (process tree): {peak:.2f} GiB, target <= {TARGET_RSS_GIB:.0f} GiB: "
                    f"{'met' if peak <= TARGET_RSS_GIB else 'MISSED'} (the script's: "
                    f"{max(r['tree_gib'] for r in script):.2f} GiB)")
    return "\n".join(lines + [""] + [f"- {v}" for v in verdicts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append",
                        help="Built-in rows (repeatable). Default: 20,000; add --rows 1000000 for the large case.")
    parser.add_argument("--runs", type=int, default=2, help="Consecutive runs per side (2: the second has a champion).")
    parser.add_argument("--output", type=Path, default=Path("bench/results"), help="Where to write the JSON results.")
    parser.add_argument("--settle-gib", type=float, default=5.0,
                        help="Touch and free this many GiB right before every run, so each starts on memory freed a "
                             "moment ago (this VM makes memory left idle slow to touch again); 0: don't.")
    parser.add_argument("--side", choices=["script"], help=argparse.SUPPRESS)  # internal: one script run
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "script":
        args.workdir.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run_script(args.rows[0], args.registry, args.workdir)))
        return
    sizes = args.rows or [20_000]
    print(f"Tollgate pipeline benchmark on {platform.node()} ({os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f} at start; memory settled before each run: "
          f"{args.settle_gib:g} GiB)", flush=True)
    results, report = [], []
    for rows in sizes:
        dag, script = bench_sides(rows, args.runs, args.settle_gib)
        results.append({"rows": rows, "settle_gib": args.settle_gib, "dag": dag, "script": script})
        report.append(render(rows, dag, script))
        print(report[-1], flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    (args.output / f"pipeline-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
