"""Infra-validate (TFX InfraValidator style): the candidate must load and answer in the real model server.

Before promotion the candidate is packaged exactly as the registry will store it
(``model.joblib`` + ``input_schema.json`` + ``metadata.json``), started with
``python -m tollgate.serving`` — the serving image's entry point — on free loopback
ports, queried with sample test rows over Open Inference Protocol v2 REST and gRPC, and
its answers compared with in-process ``predict_proba``. Any failure (the server does
not start or become ready in time, refuses the rows, or answers differently) blocks
promotion with the reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tollgate.registry import METADATA_FILE, MODEL_FILE, SCHEMA_FILE
from tollgate.steps.preprocess import FeatureSpec

VALIDATED_PROTOCOLS = ("rest-v2", "grpc")


def stage_version_dir(model_dir: str | Path, spec: FeatureSpec, dest: str | Path) -> Path:
    """Lay out the candidate as a registry version directory (what KServe mounts at /mnt/models)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    source = Path(model_dir) / MODEL_FILE
    if not source.is_file():
        raise FileNotFoundError(f"candidate has no {MODEL_FILE} in {model_dir}")
    shutil.copyfile(source, dest / MODEL_FILE)
    (dest / SCHEMA_FILE).write_text(json.dumps(spec.schema, indent=2))
    (dest / METADATA_FILE).write_text(json.dumps({
        "version": "candidate",
        "features": {"target": spec.target, "positive_label": spec.positive_label,
                     "negative_label": spec.negative_label},
    }, default=str))
    return dest


def _sample_rows(test: pd.DataFrame, spec: FeatureSpec, rows: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    sample = test[spec.columns].head(rows)
    records = [{k: (None if _is_missing(v) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}
               for row in sample.to_dict("records")]
    return sample, records


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def infra_validate(model_dir: str, test: pd.DataFrame, spec: FeatureSpec, sample_rows: int = 32,
                   ready_timeout: float = 60.0, tolerance: float = 1e-9, max_batch: int | None = None,
                   unknown_columns: str | None = None, model_name: str = "candidate",
                   log_dir: str | Path | None = None) -> dict[str, Any]:
    """Return ``{"passed": bool, "reason": str, ...}``; never raises for a broken candidate."""
    from tollgate.errors import TollgateError
    from tollgate.registry import verify_directory
    from tollgate.serving.client import predict
    from tollgate.serving.process import ServerNotReady, ServerProcess

    report: dict[str, Any] = {"passed": False, "protocols": list(VALIDATED_PROTOCOLS)}
    staging = Path(tempfile.mkdtemp(prefix="tollgate-infra-"))
    try:
        try:
            verify_directory(model_dir)  # a directory with a registry manifest must match it
            version_dir = stage_version_dir(model_dir, spec, staging / "model")
        except (OSError, TollgateError) as exc:
            return {**report, "reason": f"cannot stage the candidate: {exc}"}
        sample, records = _sample_rows(test, spec, sample_rows)
        report["rows"] = len(records)
        if not records:
            return {**report, "reason": "the test split has no rows to validate with"}
        log_path = Path(log_dir) / "model-server.log" if log_dir else staging / "model-server.log"
        server = ServerProcess(version_dir, model_name, max_batch=max_batch, unknown_columns=unknown_columns,
                               log_path=log_path)
        with server:
            try:
                report["startup_seconds"] = round(server.wait_ready(ready_timeout), 3)
            except ServerNotReady as exc:
                return {**report, "reason": f"model server did not become ready: {exc}"}
            answers = {}
            for protocol in VALIDATED_PROTOCOLS:
                url = server.grpc_url if protocol == "grpc" else server.rest_url
                started = time.perf_counter()
                try:
                    answers[protocol] = predict(protocol, url, model_name, records, timeout=ready_timeout)
                except TollgateError as exc:
                    return {**report, "reason": f"model server refused the sample rows over {protocol}: {exc}"}
                report.setdefault("latency_ms", {})[protocol] = round((time.perf_counter() - started) * 1000, 2)
            if not server.alive():
                return {**report, "reason": f"model server died while answering:\n{server.log_tail()}"}
        return {**report, **_compare(version_dir, sample, answers, tolerance)}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _compare(version_dir: Path, sample: pd.DataFrame, answers: dict[str, Any], tolerance: float) -> dict[str, Any]:
    import joblib

    try:
        expected = joblib.load(version_dir / MODEL_FILE).predict_proba(sample)
    except Exception as exc:  # the server answered, but the artifact is still unusable in-process
        return {"passed": False, "reason": f"in-process predict_proba failed: {type(exc).__name__}: {exc}"}
    expected_positive = expected[:, 1]
    expected_positive_class = expected[:, 1] > expected[:, 0]
    differences = {}
    for protocol, answer in answers.items():
        got = np.asarray(answer.probabilities, dtype=np.float64)
        if got.shape != expected_positive.shape:
            return {"passed": False, "reason": f"{protocol} answered {got.shape[0]} rows for {len(sample)} sent"}
        difference = float(np.max(np.abs(got - expected_positive)))
        differences[protocol] = difference
        if not difference <= tolerance:
            return {"passed": False, "max_abs_difference": differences,
                    "reason": f"{protocol} probabilities differ from in-process predict_proba by {difference:.3g} "
                              f"(tolerance {tolerance:g})"}
        positive_label = json.loads((version_dir / METADATA_FILE).read_text())["features"]["positive_label"]
        got_positive_class = np.array([str(c) == str(positive_label) for c in answer.classes])
        if not np.array_equal(got_positive_class, expected_positive_class):
            return {"passed": False, "max_abs_difference": differences,
                    "reason": f"{protocol} predicted classes differ from in-process predictions"}
    return {"passed": True, "max_abs_difference": differences,
            "reason": f"model server answered {len(sample)} test rows over {' and '.join(answers)} "
                      f"exactly as in-process predict_proba (max difference {max(differences.values()):.3g})"}
