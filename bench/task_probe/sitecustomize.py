"""Per-task time probe for ``bench/task_profile.py`` (loaded only through its PYTHONPATH).

Python imports ``sitecustomize`` at start-up; with ``TOLLGATE_TASK_PROBE`` set this one
splits the life of a KFP task process into phases and writes them as JSON at exit:

- ``interpreter``: process creation to this module (interpreter and ``site`` start-up);
- ``kfp``: kfp's executor_main, loading the component, parsing the executor input;
- inside the component function, exclusively: ``import`` (import statements),
  ``read`` / ``write`` (DataFrame artifact I/O), and ``work`` (everything else);
- ``outputs``: the executor writing executor_output.json, up to ``atexit``.

Each phase gets wall and CPU seconds. The probe wraps ``builtins.__import__`` and a few
functions; it costs microseconds per import statement and nothing per row.
"""

import atexit
import builtins
import json
import os
import sys
import time

_OUT = os.environ.get("TOLLGATE_TASK_PROBE")


def _process_age() -> float:
    """Seconds since this process was created (/proc, clock-tick resolution)."""
    with open("/proc/self/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


class _Probe:
    # (module, attribute path, category): timed once the module is imported.
    TARGETS = [("pandas", "read_parquet", "read"), ("pandas", "read_feather", "read"),
               ("pandas", "DataFrame.to_parquet", "write"), ("pandas", "DataFrame.to_feather", "write"),
               ("tollgate.artifacts", "read_frame", "read"), ("tollgate.artifacts", "write_frame", "write"),
               # preprocess reads and writes Arrow tables (read_frame and write_frame call these too)
               ("tollgate.artifacts", "read_table", "read"), ("tollgate.artifacts", "write_table", "write")]

    def __init__(self, role: str):
        self.role = role
        self.age_at_site = _process_age()
        self.started_wall = time.time() - self.age_at_site
        self.phases: dict[str, list[float]] = {"interpreter": [self.age_at_site, 0.0]}
        self.base = "kfp" if role == "task" else "parent"
        self.stack: list[str] = []
        self.last_wall, self.last_cpu = time.perf_counter(), time.process_time()
        self.pending = list(self.TARGETS)
        self.task = None

    def mark(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        current = self.stack[-1] if self.stack else self.base
        slot = self.phases.setdefault(current, [0.0, 0.0])
        slot[0] += wall - self.last_wall
        slot[1] += cpu - self.last_cpu
        self.last_wall, self.last_cpu = wall, cpu

    def timed(self, category, func):
        def wrapper(*args, **kwargs):
            if self.base != "work":
                return func(*args, **kwargs)
            self.mark()
            self.stack.append(category)
            try:
                return func(*args, **kwargs)
            finally:
                self.mark()
                self.stack.pop()
        wrapper.__wrapped__ = func
        return wrapper

    def patch_loaded(self) -> None:
        for target in list(self.pending):
            module_name, path, category = target
            module = sys.modules.get(module_name)
            if module is None or getattr(module, "__spec__", None) is None:
                continue
            *owners, attribute = path.split(".")
            owner = module
            try:
                for name in owners:
                    owner = getattr(owner, name)
                original = getattr(owner, attribute)
            except AttributeError:
                continue  # partially initialised; try after the next import
            self.pending.remove(target)
            setattr(owner, attribute, self.timed(category, original))

    def switch(self, base: str) -> None:
        self.mark()
        self.base = base

    def dump(self) -> None:
        self.mark()
        times = os.times()
        record = {"role": self.role, "task": self.task, "pid": os.getpid(), "started": self.started_wall,
                  "ended": time.time(), "phases": {k: {"wall": v[0], "cpu": v[1]} for k, v in self.phases.items()},
                  "cpu_self": times.user + times.system, "cpu_children": times.children_user + times.children_system,
                  "system_self": times.system, "system_children": times.children_system,
                  "modules": sorted(m for m in sys.modules if "." not in m)}
        with open(os.path.join(_OUT, f"{self.role}-{os.getpid()}.json"), "w") as handle:
            json.dump(record, handle)


def _task_name(argv: list[str]) -> str | None:
    if "--executor_input" not in argv:
        return None
    executor_input = json.loads(argv[argv.index("--executor_input") + 1])
    # .../<pipeline run>/<task>/executor_output.json
    return os.path.basename(os.path.dirname(executor_input["outputs"]["outputFile"]))


def _install() -> None:
    # The runner is the `tollgate` console script; other processes (the model server that
    # infra-validation starts) are counted in their parent task's children CPU.
    if "--executor_input" in sys.argv:
        role = "task"
    elif os.path.basename(sys.argv[0]) == "tollgate":
        role = "parent"
    else:
        return
    probe = _Probe(role)
    if role == "task":
        probe.task = _task_name(sys.argv)
    real_import = builtins.__import__

    def timed_import(name, globals=None, locals=None, fromlist=(), level=0):
        if probe.base != "work":
            module = real_import(name, globals, locals, fromlist, level)
        else:
            probe.mark()
            probe.stack.append("import")
            try:
                module = real_import(name, globals, locals, fromlist, level)
            finally:
                probe.mark()
                probe.stack.pop()
        if probe.pending:
            probe.patch_loaded()
        if role == "task" and not getattr(timed_import, "done", False):
            executor = getattr(sys.modules.get("kfp.dsl.executor"), "Executor", None)
            if hasattr(executor, "write_executor_output"):
                timed_import.done = True
                execute, write = executor.execute, executor.write_executor_output

                def execute_probed(self):
                    probe.switch("work")
                    return execute(self)

                def write_probed(self, *args, **kwargs):
                    probe.switch("outputs")
                    return write(self, *args, **kwargs)

                executor.execute, executor.write_executor_output = execute_probed, write_probed
        return module

    builtins.__import__ = timed_import
    atexit.register(probe.dump)


if _OUT:
    _install()
