"""Infra-validate (TFX InfraValidator style): the candidate must load and answer in the real model server.

Before promotion the candidate is laid out as a version directory (:func:`stage_version_dir`),
started with ``python -m tollgate.serving`` — the serving image's entry point — on free
loopback ports, and queried with sample test rows over Open Inference Protocol v2 REST and
gRPC. Against the version register will publish, the directory holds the *same*
``model.onnx`` bytes and the *same* ``input_schema.json`` (the feature spec's schema, which
register writes unchanged; it carries the decision threshold). What differs, none of it read
when answering a request: ``metadata.json`` holds only the values the server reads from it —
``version`` (``"candidate"`` instead of the number register assigns) and ``features``
(``FeatureSpec.served_features``, exactly what register records) — and none of register's metrics, lineage or gate outcome; ``model.joblib``,
``data_schema.json`` and the ``_COMPLETE`` manifest are absent (the candidate directory's
manifest, if any, is verified before staging).
Two comparisons, neither of which unpickles anything:

* the server's answers must be *identical* to onnxruntime in this process running the
  same bytes (``tolerance``, 0 by default): same graph, same schema code, same numbers;
* that graph must stay within ``sklearn_tolerance`` (1e-5) of the scikit-learn Pipeline
  on the whole test split, using the Pipeline's probabilities that train saved beside
  the graph. Rows whose predicted class differs (float32 rounding at the decision
  threshold) are counted: any is a warning; more than ``max_class_flips`` blocks.

Any failure (the server does not start or become ready in time, refuses the rows, or
answers differently) blocks promotion with the reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tollgate.records import KIND_KEY, VERSION_KEY, FeatureSpec, InfraValidation, VersionMetadata
from tollgate.registry import METADATA_FILE, ONNX_FILE, SCHEMA_FILE

if TYPE_CHECKING:
    import pandas as pd

    from tollgate.settings import InfraValidateSettings

# pandas (and the step modules that import it) load only once the model server is starting:
# the server takes a second or two to become ready on the other core, and the task spends
# that time importing pandas and kserve's client and reading the test split (see infra_validate).

VALIDATED_PROTOCOLS = ("rest-v2", "grpc")


def stage_version_dir(model_dir: str | Path, spec: FeatureSpec, dest: str | Path) -> Path:
    """Lay out the candidate as a version directory (what KServe mounts at /mnt/models): the candidate's
    ``model.onnx``, the spec's ``input_schema.json`` and a ``metadata.json`` holding only what the server
    reads (see the module docstring for what differs from the registered version)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    source = Path(model_dir) / ONNX_FILE
    if not source.is_file():
        raise FileNotFoundError(f"candidate has no {ONNX_FILE} in {model_dir}")
    shutil.copyfile(source, dest / ONNX_FILE)
    (dest / SCHEMA_FILE).write_text(json.dumps(spec.schema, indent=2))
    staged = VersionMetadata(version="candidate", features=spec.served_features()).to_dict()
    # Only the envelope and what the server reads: no empty metrics, lineage or gate fields that
    # would pass for the candidate's.
    served = {KIND_KEY, VERSION_KEY, "version", "features"}
    (dest / METADATA_FILE).write_text(json.dumps({k: v for k, v in staged.items() if k in served}, default=str))
    return dest


def _sample_rows(test: pd.DataFrame, spec: FeatureSpec, rows: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    sample = test[spec.columns].head(rows)
    records = [{k: (None if _is_missing(v) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}
               for row in sample.to_dict("records")]
    return sample, records


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def infra_validate(model_dir: str, test: pd.DataFrame | Callable[[], pd.DataFrame], spec: FeatureSpec,
                   sample_rows: int = 32,
                   ready_timeout: float = 60.0, tolerance: float = 0.0, max_batch: int | None = None,
                   unknown_columns: str | None = None, model_name: str = "candidate",
                   log_dir: str | Path | None = None, sklearn_tolerance: float = 1e-5,
                   max_class_flips: int | None = None) -> InfraValidation:
    """The verdict (:class:`~tollgate.records.InfraValidation`: passed, the reason, warnings and what
    was measured); never raises for a broken candidate.

    ``test`` must be the split train saved the Pipeline's probabilities for (same rows, same order),
    or a function that reads it: then it is read while the model server starts. ``startup_seconds``
    runs from the server's launch to the first readiness check that succeeds, which comes after
    that read and the client's import: an upper bound on the server's start-up (the read also
    counts against ``ready_timeout``; a test split takes well under a second).
    """
    from tollgate.errors import TollgateError
    from tollgate.registry import verify_directory
    from tollgate.serving.process import ServerNotReady, ServerProcess

    # Built up as the checks run (each check's result merged in), then read as the record.
    report: dict[str, Any] = {"passed": False, "protocols": list(VALIDATED_PROTOCOLS), "warnings": []}
    staging = Path(tempfile.mkdtemp(prefix="tollgate-infra-"))
    try:
        try:
            verify_directory(model_dir)  # a directory with a registry manifest must match it
            version_dir = stage_version_dir(model_dir, spec, staging / "model")
        except (OSError, TollgateError) as exc:
            return InfraValidation.from_dict({**report, "reason": f"cannot stage the candidate: {exc}"})
        log_path = Path(log_dir) / "model-server.log" if log_dir else staging / "model-server.log"
        server = ServerProcess(version_dir, model_name, max_batch=max_batch, unknown_columns=unknown_columns,
                               log_path=log_path)
        with server:
            # While the server starts on the other core: the test split (pandas) and kserve's
            # client (about a second to import each) load here.
            table = test() if callable(test) else test
            sample, records = _sample_rows(table, spec, sample_rows)
            report["rows"] = len(records)
            if not records:
                return InfraValidation.from_dict({**report, "reason": "the test split has no rows to validate with"})
            from tollgate.serving.client import predict

            try:
                report["startup_seconds"] = round(server.wait_ready(ready_timeout), 3)
            except ServerNotReady as exc:
                return InfraValidation.from_dict({**report, "reason": f"model server did not become ready: {exc}"})
            answers = {}
            for protocol in VALIDATED_PROTOCOLS:
                url = server.grpc_url if protocol == "grpc" else server.rest_url
                started = time.perf_counter()
                try:
                    answers[protocol] = predict(protocol, url, model_name, records, timeout=ready_timeout)
                except TollgateError as exc:
                    return InfraValidation.from_dict(
                        {**report, "reason": f"model server refused the sample rows over {protocol}: {exc}"})
                report.setdefault("latency_ms", {})[protocol] = round((time.perf_counter() - started) * 1000, 2)
            if not server.alive():
                return InfraValidation.from_dict(
                    {**report, "reason": f"model server died while answering:\n{server.log_tail()}"})
        report.update(_compare_with_onnxruntime(version_dir, spec, sample, answers, tolerance))
        if not report["passed"]:
            return InfraValidation.from_dict(report)
        report.update(_compare_with_sklearn(Path(model_dir), version_dir, spec, table, sklearn_tolerance,
                                            max_class_flips, report["warnings"]))
        verdict = InfraValidation.from_dict(report)
        agreement = verdict.sklearn_agreement
        if verdict.passed and agreement is not None:
            verdict.reason += (f"; the graph is within {agreement.max_abs_difference:.3g} of the scikit-learn "
                               f"Pipeline on {agreement.rows} test rows ({agreement.class_flips} class flips)")
        return verdict
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _compare_with_onnxruntime(version_dir: Path, spec: FeatureSpec, sample: pd.DataFrame, answers: dict[str, Any],
                              tolerance: float) -> dict[str, Any]:
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.labels import positive_decisions

    try:
        expected = OnnxModel.from_file(version_dir / ONNX_FILE, spec.schema).predict_proba(sample).astype(np.float64)
    except Exception as exc:  # the server answered, but this process cannot run the same bytes
        return {"passed": False, "reason": f"in-process onnxruntime failed: {type(exc).__name__}: {exc}"}
    if spec.multiclass:
        return _compare_multiclass(spec, sample, answers, expected, tolerance)
    expected_positive = expected[:, 1]
    # The version's decision rule, as the server applies it: P(positive) >= decision_threshold.
    expected_positive_class = positive_decisions(expected_positive, spec.decision_threshold)
    # The label the server answers with: read from the metadata it was given, as the server reads it.
    positive_label = VersionMetadata.from_json((version_dir / METADATA_FILE).read_text()).binary_labels[1]
    differences = {}
    for protocol, answer in answers.items():
        got = np.asarray(answer.probabilities, dtype=np.float64)
        if got.shape != expected_positive.shape:
            return {"passed": False, "reason": f"{protocol} answered {got.shape[0]} rows for {len(sample)} sent"}
        difference = float(np.max(np.abs(got - expected_positive)))
        differences[protocol] = difference
        if not difference <= tolerance:
            return {"passed": False, "max_abs_difference": differences,
                    "reason": f"{protocol} probabilities differ from in-process onnxruntime on the same bytes by "
                              f"{difference:.3g} (tolerance {tolerance:g})"}
        got_positive_class = np.array([str(c) == str(positive_label) for c in answer.classes])
        if not np.array_equal(got_positive_class, expected_positive_class):
            return {"passed": False, "max_abs_difference": differences,
                    "reason": f"{protocol} predicted classes differ from in-process onnxruntime"}
    return {"passed": True, "max_abs_difference": differences,
            "reason": f"model server answered {len(sample)} test rows over {' and '.join(answers)} "
                      f"exactly as in-process onnxruntime on the same model.onnx "
                      f"(max difference {max(differences.values()):.3g})"}


def _compare_multiclass(spec: FeatureSpec, sample: pd.DataFrame, answers: dict[str, Any], expected: np.ndarray,
                        tolerance: float) -> dict[str, Any]:
    """Every class's probability and the predicted class, per protocol, against in-process onnxruntime."""
    expected_classes = [str(spec.classes[i]) for i in expected.argmax(axis=1)]
    differences = {}
    for protocol, answer in answers.items():
        got = np.asarray(answer.class_probabilities, dtype=np.float64)
        if got.shape != expected.shape:
            return {"passed": False, "reason": f"{protocol} answered probabilities of shape {list(got.shape)}; "
                                               f"expected {list(expected.shape)} ({len(sample)} rows x "
                                               f"{len(spec.classes)} classes)"}
        if answer.class_order is not None and [str(c) for c in answer.class_order] != [str(c) for c in spec.classes]:
            return {"passed": False, "reason": f"{protocol} names the classes {answer.class_order}; the model's "
                                               f"class order is {spec.classes}"}
        difference = float(np.max(np.abs(got - expected)))
        differences[protocol] = difference
        if not difference <= tolerance:
            return {"passed": False, "max_abs_difference": differences,
                    "reason": f"{protocol} probabilities differ from in-process onnxruntime on the same bytes by "
                              f"{difference:.3g} (tolerance {tolerance:g})"}
        if [str(c) for c in answer.classes] != expected_classes:
            return {"passed": False, "max_abs_difference": differences,
                    "reason": f"{protocol} predicted classes differ from in-process onnxruntime"}
    return {"passed": True, "max_abs_difference": differences,
            "reason": f"model server answered {len(sample)} test rows over {' and '.join(answers)} "
                      f"exactly as in-process onnxruntime on the same model.onnx, all {len(spec.classes)} class "
                      f"probabilities (max difference {max(differences.values()):.3g})"}


def _compare_with_sklearn(model_dir: Path, version_dir: Path, spec: FeatureSpec, test: pd.DataFrame,
                          tolerance: float, max_class_flips: int | None, warnings: list[str]) -> dict[str, Any]:
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.export import probability_agreement
    from tollgate.steps.train import REFERENCE_FILE

    reference_path = model_dir / REFERENCE_FILE
    if not reference_path.is_file():
        return {"passed": False, "reason": f"the candidate has no {REFERENCE_FILE} (the scikit-learn Pipeline's "
                                           "test probabilities, written by train); cannot bound the float32 drift"}
    try:
        reference = np.load(reference_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return {"passed": False, "reason": f"{REFERENCE_FILE} is unreadable: {exc}"}
    if reference.ndim != 2 or reference.shape != (len(test), len(spec.class_labels)):
        return {"passed": False, "reason": f"{REFERENCE_FILE} holds shape {list(reference.shape)}, but the test split "
                                           f"has {len(test)} rows: it belongs to another split"}
    graph = OnnxModel.from_file(version_dir / ONNX_FILE, spec.schema).predict_proba(test)
    agreement = probability_agreement(graph, reference, spec.decision_threshold)
    result: dict[str, Any] = {"sklearn_agreement": {**agreement.to_dict(), "tolerance": tolerance,
                                                    "max_class_flips": max_class_flips}}
    flips = agreement.class_flips
    if flips:
        warnings.append(f"{flips} of {agreement.rows} test rows change class between the scikit-learn Pipeline "
                        "and the served ONNX graph (float32 rounding at the decision threshold)")
    if not agreement.max_abs_difference <= tolerance:
        return {**result, "passed": False,
                "reason": f"the served graph differs from the scikit-learn Pipeline by "
                          f"{agreement.max_abs_difference:.3g} on the test split (allowed {tolerance:g})"}
    if max_class_flips is not None and flips > max_class_flips:
        return {**result, "passed": False,
                "reason": f"{flips} test rows change class between the scikit-learn Pipeline and the served graph "
                          f"(serving.infra_validation.max_class_flips is {max_class_flips})"}
    return result


def run_infra_validate(model_dir: str, test: pd.DataFrame | Callable[[], pd.DataFrame], spec: FeatureSpec,
                       settings: InfraValidateSettings, log_dir: str | Path) -> InfraValidation:
    """Infra-validate as the DAG runs it, with the server's log in ``log_dir`` (beside the report,
    so a blocked candidate can be diagnosed afterwards); ``test`` as for :func:`infra_validate`."""
    checks = settings.infra_validation
    return infra_validate(model_dir, test, spec, sample_rows=checks.sample_rows,
                          ready_timeout=checks.ready_timeout_seconds, tolerance=checks.tolerance,
                          max_batch=settings.max_batch, unknown_columns=settings.unknown_columns, log_dir=log_dir,
                          sklearn_tolerance=checks.sklearn_tolerance, max_class_flips=checks.max_class_flips)
