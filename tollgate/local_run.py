"""Run the training DAG on this machine through ``kfp.local.SubprocessRunner``.

Every task runs the same component function as in the cluster, with this interpreter
(``use_venv=False``: the project's .venv already has everything, so nothing is
pip-installed per task). kfp.local prints each task's full executor input; all of that
goes to ``kfp.log`` in the run directory, and the console gets progress and a summary.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollgate.config import TollgateConfig
from tollgate.resident import ResidentFiles

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Parallel tasks print from several threads, so one physical line may hold several events.
_TASK_EVENT = re.compile(r"Executing task '(?P<started>[^']+)'|Task '(?P<finished>[^']+)' finished with status (?P<status>\w+)")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Blocked))(?::\s?(.*))?$")


@dataclass
class TaskTiming:
    """Wall-clock time of one task (a ParallelFor task appears once per iteration)."""

    name: str
    started: float
    finished: float | None = None
    status: str = "RUNNING"

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started


@dataclass
class RunOutcome:
    """What a local run produced: where, how long each step took, and whether it succeeded."""

    run_dir: Path
    pipeline_dir: Path | None
    log_file: Path
    succeeded: bool
    total_seconds: float
    timings: list[TaskTiming] = field(default_factory=list)
    error: str | None = None
    failed_task: str | None = None
    resident_bytes: int = 0  # most bytes of the tasks' library files kept mapped at once (tollgate/resident.py)


class _TaskEventStream(io.TextIOBase):
    """A write-only stream that copies kfp.local's output to the log and reports task events."""

    def __init__(self, log, on_event: Callable[[str, str], None]):
        self._log = log
        self._on_event = on_event
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            if self._log.closed:
                # A logging handler created during an earlier run in this process still holds this
                # stream; writing would raise, and Python would print that traceback into the
                # current run's log, where it would pass for the run's failure reason.
                return len(text)
            self._log.write(text)
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            for match in _TASK_EVENT.finditer(_ANSI.sub("", line)):
                if match.group("started"):
                    self._on_event("start", match.group("started"))
                else:
                    self._on_event(match.group("status").lower(), match.group("finished"))
        return len(text)

    def flush(self) -> None:
        if not self._log.closed:  # see write(): a finished run's stream may still be flushed
            self._log.flush()


def new_run_dir(root: str | Path) -> Path:
    """A fresh, sortable run directory under ``root``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    run_dir = Path(root).expanduser().resolve() / f"run-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def execute_pipeline(config: TollgateConfig, arguments: dict[str, Any], run_dir: Path,
                     on_event: Callable[[str, str], None] | None = None) -> RunOutcome:
    """Run the DAG once with kfp.local; returns timings and where the outputs are."""
    from kfp import local

    from tollgate.pipelines.training import build_pipeline

    pipeline = build_pipeline(config)
    timings: list[TaskTiming] = []
    lock = threading.Lock()

    def record(event: str, task: str) -> None:
        now = time.perf_counter()
        with lock:
            if event == "start":
                timings.append(TaskTiming(task, now))
            else:
                running = next((t for t in timings if t.name == task and t.finished is None), None)
                if running:
                    running.finished, running.status = now, event.upper()
        if on_event:
            on_event(event, task)

    log_file = run_dir / "kfp.log"
    started = time.perf_counter()
    error = None
    with open(log_file, "w") as log:
        stream = _TaskEventStream(log, record)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(run_dir),
                       raise_on_error=True)
            # kfp.local indents task output by swapping builtins.print from each worker thread;
            # with parallel tasks the swaps interleave and a patched print can outlive the run.
            saved_print = builtins.print
            keep_resident = ResidentFiles(run_dir / "loaded-files", enabled=config.run.keep_loaded_files_resident)
            try:
                with keep_resident:
                    pipeline(**arguments)
            except Exception as exc:  # kfp.local raises a generic error; the cause is in the log
                error = str(exc)
            finally:
                builtins.print = saved_print
        stream.flush()
    total = time.perf_counter() - started
    pipeline_dirs = [p for p in run_dir.iterdir() if p.is_dir()]
    pipeline_dir = pipeline_dirs[0] if pipeline_dirs else None
    if pipeline_dir is not None:
        _settle_finish_times(timings, pipeline_dir, started, time.time() - time.perf_counter())
    failed = next((t for t in timings if t.status == "FAILURE"), None)
    if error is not None:
        error = _failure_reason(log_file.read_text()) or error
    return RunOutcome(run_dir=run_dir, pipeline_dir=pipeline_dir,
                      log_file=log_file, succeeded=error is None, total_seconds=total, timings=timings,
                      error=error, failed_task=failed.name if failed else None,
                      resident_bytes=keep_resident.bytes_held)


def _settle_finish_times(timings: list[TaskTiming], pipeline_dir: Path, run_started: float, clock_offset: float) -> None:
    """Take finish times from the executor output files rather than the log.

    kfp.local sometimes logs a single "finished" line when two parallel iterations
    complete together, but every successful task writes its executor_output.json last.
    Within a step, finishes are matched to starts in order; a step's wall time (first
    start to last finish) does not depend on which iteration finished first.
    """
    by_name: dict[str, list[TaskTiming]] = {}
    for timing in timings:
        by_name.setdefault(timing.name, []).append(timing)
    for name, runs in by_name.items():
        finishes = sorted(path.stat().st_mtime - clock_offset
                          for path in pipeline_dir.glob(f"**/{name}/executor_output.json"))
        finishes = [f for f in finishes if f >= run_started]
        for timing, finished in zip(sorted(runs, key=lambda t: t.started), finishes, strict=False):
            timing.finished = max(finished, timing.started)
            if timing.status == "RUNNING":
                timing.status = "SUCCESS"
        for timing in runs:
            if timing.finished is None:
                timing.finished = time.perf_counter()
                timing.status = "FAILURE"


def _failure_reason(log_text: str) -> str | None:
    """The last exception raised inside a task, with its message (which may span lines)."""
    lines = [_ANSI.sub("", line) for line in log_text.splitlines()]
    for index in range(len(lines) - 1, -1, -1):
        if "Traceback (most recent call last)" not in lines[index]:
            continue
        # The exception line is indented like "Traceback"; source lines deeper. kfp.local's
        # indentation of task output grows with each run in one process (tests), so compare.
        indent = len(lines[index]) - len(lines[index].lstrip())
        for position in range(index + 1, len(lines)):
            match = _ERROR_LINE.match(lines[position])
            if match and len(lines[position]) - len(lines[position].lstrip()) <= indent:
                message = [f"{match.group(1)}: {match.group(2) or ''}".rstrip()]
                for follow in lines[position + 1:]:
                    stripped = follow.strip()
                    if not stripped or re.search(r"\d{2}:\d{2}:\d{2}\.\d{3} - ", follow):
                        break
                    message.append(stripped)
                return "\n".join(message)
    return None


def read_json(path: Path) -> Any:
    """Read a JSON file, or None if it does not exist (a skipped branch)."""
    return json.loads(path.read_text()) if path.is_file() else None


def find_output(pipeline_dir: Path, task: str, output: str) -> Path | None:
    """Locate ``<task>/<output>`` anywhere in the run (tasks inside dsl.If sit one level down)."""
    matches = sorted(pipeline_dir.glob(f"**/{task}/{output}"))
    return matches[0] if matches else None


def task_outputs(pipeline_dir: Path, task: str) -> dict[str, Any]:
    """A task's executor output (parameter values and artifact metadata), or {} if it did not run."""
    path = find_output(pipeline_dir, task, "executor_output.json")
    return read_json(path) or {} if path else {}
