"""Tollgate: a gated KFP v2 training pipeline for tabular classification, served by KServe."""

import os

__version__ = "0.1.0"

# Inside a KFP task (kfp's lightweight-component command runs the executor with
# _KFP_RUNTIME=true, locally and in the cluster; tests/test_import_cost.py pins it), the
# process exits right after the executor has written its outputs. Python's shutdown then
# garbage-collects every object of scikit-learn, pandas and scipy once more: 0.3-0.7 s per
# task, paid by each of a run's ~16 tasks. Freezing the heap at exit skips that sweep; the
# operating system reclaims the memory anyway. Objects created later (during shutdown) are
# still collected, and everything a task writes is closed before the executor returns.
if os.environ.get("_KFP_RUNTIME") == "true":
    import atexit
    import gc

    atexit.register(gc.freeze)
