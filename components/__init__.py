"""KFP components: one module per DAG step, each a thin wrapper around ``tollgate.steps``.

The functions here are plain Python with KFP artifact annotations. They become
components only in :func:`build_components`, with the project image as ``base_image``
and ``install_kfp_package=False``: the image already has kfp and Tollgate, so the same
function runs unchanged in the cluster and under ``kfp.local.SubprocessRunner``.
Nothing is decorated at import time, so the image comes from the config.
"""

from __future__ import annotations

from types import SimpleNamespace

from kfp import dsl

from tollgate.components.deploy import deploy
from tollgate.components.evaluate import evaluate
from tollgate.components.gate import gate
from tollgate.components.infra_validate import infra_validate
from tollgate.components.ingest import ingest
from tollgate.components.preprocess import preprocess
from tollgate.components.register import register
from tollgate.components.report import report
from tollgate.components.retrain_check import retrain_check
from tollgate.components.select import select
from tollgate.components.train import train
from tollgate.components.validate import validate

STEP_FUNCTIONS = (retrain_check, ingest, validate, preprocess, train, select, evaluate, gate, infra_validate, register,
                  deploy, report)


def build_components(image: str) -> SimpleNamespace:
    """Wrap every step function as a KFP component that runs in ``image``."""
    return SimpleNamespace(**{
        func.__name__: dsl.component(func, base_image=image, install_kfp_package=False)
        for func in STEP_FUNCTIONS
    })
