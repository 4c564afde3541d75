"""Tollgate: a gated KFP v2 training pipeline for tabular classification, served by KServe."""

import os

__version__ = "0.2.0"

# Inside a KFP task (kfp's lightweight-component command runs the executor with
# _KFP_RUNTIME=true, locally and in the cluster; tests/test_import_cost.py pins it) most of
# the process's life is importing pandas, scikit-learn and onnx, then a few seconds of work.
# Two garbage-collector settings cut that fixed cost (bench/task_profile.py, docs/benchmarks.md):
# - young collections every 10,000 allocations instead of 700: imports create hundreds of
#   thousands of long-lived objects, and each collection re-scans them (-13% import time);
# - at exit, freeze the heap: Python's shutdown would otherwise sweep every module's objects
#   once more, 0.3-0.7 s per task; the operating system reclaims the memory anyway. Objects
#   created during shutdown are still collected, and a task's files are closed by then.
if os.environ.get("_KFP_RUNTIME") == "true":
    import atexit
    import gc

    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    atexit.register(gc.freeze)
    if os.environ.get("TOLLGATE_LOADED_FILES_DIR"):
        # A local run keeps the files its tasks load in memory (tollgate/resident.py): list ours.
        def _record_loaded_files() -> None:
            from tollgate.resident import record_loaded_files

            record_loaded_files()

        atexit.register(_record_loaded_files)
