"""Benchmark: the local KFP DAG against a plain script doing the same steps.

    .venv/bin/python bench/pipeline.py                      # 10k, 100k and 1M rows
    .venv/bin/python bench/pipeline.py --rows 10000 --rows 100000

Both sides run the same step functions from ``tollgate.steps`` on the same generated
data with the default config (same candidate grid, same training parallelism and
threads). The plain script keeps data in memory and calls the functions directly; the
DAG runs each task as a kfp.local subprocess exchanging Parquet artifacts. The ratio
of their wall times is the orchestration overhead. Peak RSS is sampled over the whole
process tree (the runner plus every task or worker process alive at the time).

Targets (2 cores): 1M rows end to end <= 180 s, overhead <= 10%, peak RSS <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil

from tollgate.config import TollgateConfig, load_config

TARGET_SECONDS_1M = 180.0
TARGET_OVERHEAD = 0.10
TARGET_RSS_GIB = 4.0


class TreeRssSampler:
    """Samples the summed RSS of this process and all its descendants every 50 ms."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
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


@contextmanager
def step(times: dict[str, float], name: str):
    started = time.perf_counter()
    yield
    times[name] = times.get(name, 0.0) + time.perf_counter() - started


def _fit_candidate(arguments):
    # Runs in a worker process, like one ParallelFor iteration.
    from tollgate.steps.train import train_candidate

    train, validation, test, spec, features = arguments
    result = train_candidate(train, validation, spec, features, reference=test)
    return result


def run_plain(config: TollgateConfig, workdir: Path) -> dict:
    """The same steps as the DAG, in one process plus a training pool, with no KFP.

    Each block calls the step functions its component calls, with the same settings, so
    the difference from the DAG is the orchestration: task processes and artifact I/O.
    """
    from tollgate.registry import open_registry
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.deploy import deploy
    from tollgate.steps.evaluate import evaluate_model
    from tollgate.steps.gate import Policy, decide
    from tollgate.steps.infra_validate import infra_validate
    from tollgate.steps.ingest import ingest
    from tollgate.steps.preprocess import build_feature_spec, split_dataset
    from tollgate.steps.register import build_metadata, register_model
    from tollgate.steps.report import ReportInputs, render_report
    from tollgate.steps.select import select_best
    from tollgate.steps.train import expand_candidates, save_candidate
    from tollgate.steps.validate import infer_data_schema, validate

    times: dict[str, float] = {}
    data, serving = config.data, config.serving
    registry = open_registry(str(workdir / "registry"))
    with step(times, "ingest"):
        ingested = ingest(data.source, data.target, drop=data.drop, builtin=data.builtin.model_dump(),
                          date_column=data.date_column)
        frame = ingested.frame
    with step(times, "validate"):
        report = validate(frame, None, target=data.target, positive_label=data.positive_label,
                          min_rows=data.min_rows, settings=config.validation)
        ignored = list(data.drop) + ([data.date_column] if data.date_column else [])
        data_schema = infer_data_schema(frame, data.target, data.positive_label, ignored, config.validation.drift.bins)
    with step(times, "preprocess"):
        spec = build_feature_spec(frame, data.target, data.positive_label, data.drop, data.date_column,
                                  config.features.numeric, config.features.categorical,
                                  config.features.max_categories)
        splits = split_dataset(frame, spec, config.split.test_size, config.split.validation_size, config.split.seed)
    candidates = expand_candidates([c.model_dump() for c in config.train.candidates], seed=config.split.seed)
    with step(times, "train"):
        with ProcessPoolExecutor(max_workers=config.train.parallelism, initializer=_limit_threads,
                                 initargs=(config.train.threads_per_candidate,)) as pool:
            trained = list(pool.map(_fit_candidate, [(splits.train, splits.validation, splits.test, c, spec)
                                                   for c in candidates]))
    with step(times, "select"):
        results = [{"candidate_id": t.candidate_id, "validation_metrics": t.validation_metrics} for t in trained]
        winner_id = select_best(results, config.train.selection_metric)["candidate_id"]
        winner = next(t for t in trained if t.candidate_id == winner_id)
    with step(times, "evaluate"):
        evaluation = evaluate_model(OnnxModel(winner.onnx, spec.schema), splits.test, spec.columns, fairness=config.fairness.model_dump())
    with step(times, "gate"):
        decision = decide(evaluation["metrics"], None, Policy.from_config(config.gate.model_dump()))
    with step(times, "report"):
        render_report(ReportInputs(model_name=config.model_name, data={"rows": len(frame)},
                                   validation=report.to_dict(), evaluation={"candidate": evaluation, "champion": None},
                                   decision=decision.to_dict()))
    model_dir = workdir / "model"
    with step(times, "infra-validate"):
        save_candidate(winner, model_dir)
        infra = infra_validate(str(model_dir), splits.test, spec, sample_rows=serving.infra_validation.sample_rows,
                               ready_timeout=serving.infra_validation.ready_timeout_seconds,
                               tolerance=serving.infra_validation.tolerance, max_batch=serving.max_batch,
                               unknown_columns=serving.unknown_columns, log_dir=str(workdir),
                               sklearn_tolerance=serving.infra_validation.sklearn_tolerance,
                               max_class_flips=serving.infra_validation.max_class_flips)
    with step(times, "register"):
        metadata = build_metadata(candidate={"candidate_id": winner.candidate_id, "family": winner.family,
                                             "params": winner.params}, test_metrics=evaluation["metrics"],
                                  data={"rows": len(frame), "fingerprint": ingested.fingerprint},
                                  decision=decision.to_dict(), run_id="bench-plain", champion_version=None)
        version = register_model(registry, config.model_name, model_dir, spec.schema, metadata, data_schema=data_schema)
    with step(times, "deploy"):
        deploy("local", registry, config.model_name, version.version)
    return {"times": times, "passed": decision.passed and bool(infra.get("passed"))}


def _limit_threads(threads: int) -> None:
    # The DAG sets OMP_NUM_THREADS on each training task; the pool's workers get the same.
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


def run_dag(config: TollgateConfig, workdir: Path) -> dict:
    """The real DAG through kfp.local, exactly as `tollgate run` runs it."""
    from tollgate.local_run import execute_pipeline, new_run_dir
    from tollgate.registry import open_registry
    from tollgate.summary import step_times

    registry = open_registry(config.registry.uri)
    arguments = {"data_source": config.data.source, "registry_uri": registry.uri,
                 "model_name": config.model_name, "scheduled_time": ""}
    outcome = execute_pipeline(config, arguments, new_run_dir(config.run.root))
    if not outcome.succeeded:
        raise SystemExit(f"pipeline failed: {outcome.error}")
    return {"times": {row["step"]: row["seconds"] for row in step_times(outcome)}, "total": outcome.total_seconds}


def bench_size(rows: int) -> dict:
    """Run both sides on ``rows`` generated rows, each with a fresh registry."""
    results = {"rows": rows}
    for side in ("plain", "dag"):
        workdir = Path(tempfile.mkdtemp(prefix=f"tollgate-bench-{side}-"))
        try:
            config = load_config(None, {"data.builtin.rows": rows, "registry.uri": str(workdir / "registry"),
                                        "run.root": str(workdir / "runs")})
            started = time.perf_counter()
            with TreeRssSampler() as sampler:
                outcome = run_plain(config, workdir) if side == "plain" else run_dag(config, workdir)
            outcome["total"] = time.perf_counter() - started
            outcome["peak_rss_gib"] = sampler.peak_bytes / 2**30
            results[side] = outcome
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"  {rows:>9,} rows  {side:<5} {results[side]['total']:7.1f} s  "
              f"peak RSS {results[side]['peak_rss_gib']:.2f} GiB", flush=True)
    results["overhead"] = results["dag"]["total"] / results["plain"]["total"] - 1.0
    return results


def report(all_results: list[dict]) -> str:
    """A Markdown report: per-step times, totals, overhead and peak RSS, with verdicts."""
    steps = ["ingest", "validate", "preprocess", "train", "select", "evaluate", "gate", "report", "infra-validate",
             "register", "deploy"]
    lines = []
    for result in all_results:
        lines.append(f"\n#### {result['rows']:,} rows\n")
        lines.append("| step | DAG (kfp.local) s | plain script s |")
        lines.append("|---|---:|---:|")
        for name in steps:
            dag = result["dag"]["times"].get(name)
            plain = result["plain"]["times"].get(name)
            lines.append(f"| {name} | {dag if dag is None else f'{dag:.2f}'} | {plain if plain is None else f'{plain:.2f}'} |")
        lines.append(f"| **total** | **{result['dag']['total']:.1f}** | **{result['plain']['total']:.1f}** |")
        lines.append(f"| peak RSS (process tree) | {result['dag']['peak_rss_gib']:.2f} GiB | "
                     f"{result['plain']['peak_rss_gib']:.2f} GiB |")
        lines.append(f"\nOrchestration overhead: **{result['overhead'] * 100:+.1f}%** "
                     f"(DAG / plain = {result['dag']['total'] / result['plain']['total']:.3f}).")
    verdicts = []
    for result in all_results:
        if result["rows"] >= 1_000_000:
            total, overhead, rss = result["dag"]["total"], result["overhead"], result["dag"]["peak_rss_gib"]
            verdicts.append(f"- 1M rows end to end: {total:.0f} s (target <= {TARGET_SECONDS_1M:.0f} s): "
                            f"{'met' if total <= TARGET_SECONDS_1M else 'MISSED'}")
            verdicts.append(f"- overhead at 1M rows: {overhead * 100:.1f}% (target <= {TARGET_OVERHEAD * 100:.0f}%): "
                            f"{'met' if overhead <= TARGET_OVERHEAD else 'MISSED'}")
            verdicts.append(f"- peak RSS at 1M rows: {rss:.2f} GiB (target <= {TARGET_RSS_GIB:.0f} GiB): "
                            f"{'met' if rss <= TARGET_RSS_GIB else 'MISSED'}")
    if verdicts:
        lines.append("\n" + "\n".join(verdicts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="Row count (repeatable). Default: 10k, 100k, 1M.")
    parser.add_argument("--output", type=Path, default=Path("bench/results"), help="Where to write the JSON results.")
    args = parser.parse_args()
    sizes = args.rows or [10_000, 100_000, 1_000_000]
    print(f"Tollgate pipeline benchmark on {platform.node()} ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    all_results = [bench_size(rows) for rows in sizes]
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    (args.output / f"pipeline-{stamp}.json").write_text(json.dumps(all_results, indent=2))
    print(report(all_results))


if __name__ == "__main__":
    main()
