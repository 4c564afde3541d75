"""One typed configuration for Tollgate: a YAML file plus command-line overrides.

The default file ships inside the package (``tollgate/defaults/tollgate.yaml``); a
user's file is merged over it, then CLI overrides are applied. Any mistake fails at
load time with the field path and the reason, before any work starts.
"""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tollgate.errors import ConfigError

# The one list of each (metrics, families, unknown-column policies, which metrics are lower-is-better) lives
# in tollgate.metrics, a standard-library-only module the select and gate tasks read without importing pydantic.
from tollgate.metrics import (  # noqa: E402,F401 (re-exported: config is where users look for them)
    LOWER_IS_BETTER,
    METRIC_NAMES,
    MODEL_FAMILIES,
    MULTICLASS_METRIC_NAMES,
    BinaryMetric,
    ModelFamily,
    MulticlassMetric,
    UnknownColumns,
)
from tollgate.records import DEFAULT_DECISION_THRESHOLD


def _repeated(names: list[str]) -> list[str]:
    """Names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def _non_negative_tolerances(rules: dict[str, float]) -> dict[str, float]:
    """``max_degradation`` tolerances (binary and multiclass gates alike) are >= 0."""
    negative = {k: v for k, v in rules.items() if v < 0}
    if negative:
        raise ValueError(f"degradation tolerances must be >= 0, got {negative}")
    return rules


class _Strict(BaseModel):
    # Unknown keys are almost always typos; reject them so they cannot silently do nothing.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BuiltinDataConfig(_Strict):
    """The built-in credit-applicant generator used when ``data.source`` is ``builtin``."""

    rows: int = Field(20_000, ge=100, description="Rows to generate.")
    seed: int = Field(7, description="Random seed; the same seed gives the same table.")
    drift: float = Field(0.0, ge=0.0, le=1.0, description="0 = reference population, 1 = strongly shifted.")
    start_date: str = Field("2026-01-01", description="First application date (YYYY-MM-DD).")
    days: int = Field(90, ge=1, description="Number of daily partitions the rows spread over.")
    classes: int = Field(2, ge=2, le=10, description="2: the 'defaulted' 0/1 target; 3 or more: a 'risk_band' "
                         "target with this many text classes instead (set data.target: risk_band).")


class CsvConfig(_Strict):
    """How a CSV file is read (ignored for Parquet and the built-in data)."""

    separator: str | None = Field(None, min_length=1, max_length=1, description="Field separator; null = detected "
                                  "from the file's first lines among ',', ';', tab and '|'.")
    quotechar: str = Field('"', min_length=1, max_length=1, description="Character that quotes fields.")
    header: int | None = Field(0, ge=0, description="Row number of the header; null = the file has no header row "
                               "(then name the columns in data.csv.columns).")
    columns: list[str] | None = Field(None, description="Column names in file order: needed when header is null; "
                                      "with a header row they replace its names.")
    missing_values: list[str] = Field(default_factory=list, description="Extra markers read as missing, e.g. "
                                      "['?', 'n/a']; empty and blank fields always are.")
    strip_whitespace: bool = Field(True, description="Strip spaces around header names and text values "
                                   "(' Private' is read as 'Private').")
    encoding: str = Field("utf-8", description="Text encoding of the file, e.g. utf-8, latin-1, cp1252.")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}; for example utf-8, latin-1 or cp1252") from None
        return encoding

    @model_validator(mode="after")
    def _headerless_needs_names(self) -> CsvConfig:
        if self.header is None and not self.columns:
            raise ValueError("header: null (no header row) needs the column names in data.csv.columns")
        if self.columns:
            repeated = _repeated(self.columns)
            if repeated:
                raise ValueError(f"data.csv.columns repeats {repeated}")
        return self


class DataConfig(_Strict):
    """Where the training table comes from and how to read it."""

    source: str = Field("builtin", description="'builtin', a local CSV/Parquet path, or s3://bucket/key.")
    target: str = Field("defaulted", description="Name of the label column.")
    task: Literal["auto", "binary", "multiclass"] = Field("auto", description="auto: two label values train a "
                                                          "binary model, three or more a multiclass one.")
    positive_label: Any = Field(1, description="Label value that counts as the positive class (binary only).")
    drop: list[str] = Field(default_factory=list, description="Columns removed before training.")
    date_column: str | None = Field("application_date", description="Date column used for daily windows; dropped from features.")
    window_days: int | None = Field(None, ge=1, description="If set, scheduled runs train on the last N days before the scheduled time.")
    min_rows: int = Field(200, ge=10, description="Fewer rows than this is a too_few_rows anomaly at validate.")
    drop_identifiers: bool = Field(True, description="Leave identifier-like columns (a running index, text "
                                   "unique to most rows) out of the features; validate reports them either way.")
    csv: CsvConfig = Field(default_factory=CsvConfig)
    builtin: BuiltinDataConfig = Field(default_factory=BuiltinDataConfig)


class FeaturesConfig(_Strict):
    """Feature roles; anything left empty is inferred from dtypes."""

    numeric: list[str] | None = None
    categorical: list[str] | None = None
    max_categories: int = Field(50, ge=2, description="Cap on one-hot categories per column (rarer ones group together).")


class SplitConfig(_Strict):
    """Stratified, seeded train/validation/test split."""

    test_size: float = Field(0.2, gt=0, lt=0.5)
    validation_size: float = Field(0.2, gt=0, lt=0.5)
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.test_size + self.validation_size >= 0.8:
            raise ValueError("test_size + validation_size must leave at least 20% of rows for training")
        return self


class CandidateConfig(_Strict):
    """One model family and a small grid; every grid point becomes one training task."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    family: ModelFamily
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed estimator parameters.")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Parameter name -> values to try.")

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid entry {key!r} has no values")
        return grid


class TrainConfig(_Strict):
    """The hyperparameter fan-out and how the winner is picked."""

    selection_metric: BinaryMetric = "roc_auc"
    multiclass_selection_metric: MulticlassMetric = Field(
        "roc_auc_ovr_macro", description="Validation metric that picks the winner when the model is multiclass.")
    parallelism: int = Field(2, ge=1, description="Candidates trained at once (ParallelFor parallelism).")
    # Native thread pools (OpenMP in HistGradientBoosting) take every core by default; two
    # candidates doing that at once on 2 cores ran 40x slower here. parallelism x threads
    # should not exceed the cores a run gets.
    threads_per_candidate: int = Field(1, ge=1, description="OMP_NUM_THREADS (and CPU request) of each training task.")
    candidates: list[CandidateConfig] = Field(min_length=1)

    @field_validator("candidates")
    @classmethod
    def _unique_names(cls, candidates: list[CandidateConfig]) -> list[CandidateConfig]:
        duplicates = _repeated([c.name for c in candidates])
        if duplicates:
            raise ValueError(f"candidate names must be unique, repeated: {duplicates}")
        return candidates


class ThresholdConfig(_Strict):
    """An absolute bound on one test metric."""

    min: float | None = None
    max: float | None = None


class FairnessGateConfig(_Strict):
    """Bounds on every sensitive attribute in ``fairness.sensitive_attributes`` (None = reported only)."""

    min_disparate_impact: float | None = Field(
        0.8, ge=0, le=1, description="Lowest allowed ratio of the smallest to the largest group selection rate.")
    max_equal_opportunity_difference: float | None = Field(
        0.1, ge=0, le=1, description="Largest allowed gap between group true-positive rates.")


class MulticlassGateConfig(_Strict):
    """Thresholds for a multiclass model, on the multiclass metrics (macro/weighted, accuracy, log loss)."""

    absolute: dict[str, ThresholdConfig] = Field(default_factory=dict)
    max_degradation: dict[str, float] = Field(default_factory=dict)

    @field_validator("absolute", "max_degradation")
    @classmethod
    def _known_metrics(cls, rules: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(rules) - set(MULTICLASS_METRIC_NAMES))
        if unknown:
            raise ValueError(f"unknown multiclass metric(s) {unknown}; known: {list(MULTICLASS_METRIC_NAMES)}")
        return rules

    _non_negative = field_validator("max_degradation")(_non_negative_tolerances)


class GateConfig(_Strict):
    """The promotion policy: absolute thresholds and change thresholds against the champion."""

    absolute: dict[str, ThresholdConfig] = Field(default_factory=dict)
    # metric -> largest allowed degradation versus the champion (in the metric's own units).
    max_degradation: dict[str, float] = Field(default_factory=dict)
    fairness: FairnessGateConfig = Field(default_factory=FairnessGateConfig)
    # absolute / max_degradation above are binary metrics; a multiclass model is gated by these instead.
    multiclass: MulticlassGateConfig = Field(default_factory=MulticlassGateConfig)

    @field_validator("absolute", "max_degradation")
    @classmethod
    def _known_metrics(cls, rules: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(rules) - set(METRIC_NAMES))
        if unknown:
            multiclass = set(unknown) & set(MULTICLASS_METRIC_NAMES)
            hint = "; multiclass metrics go under gate.multiclass" if multiclass else ""
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRIC_NAMES)}{hint}")
        return rules

    _non_negative = field_validator("max_degradation")(_non_negative_tolerances)



# Validation checks and whether each stops the run. Those in ALWAYS_BLOCKING_CHECKS make
# training impossible (nothing to learn from, or labels the model cannot use), so they
# cannot be downgraded to warnings.
VALIDATION_CHECKS = ("missing_column", "new_column", "dtype_change", "null_fraction_spike", "unseen_categories",
                     "out_of_range", "too_few_rows", "duplicate_rows", "drift", "identifier_column",
                     "empty_file", "label_missing", "single_class", "unknown_labels",
                     "label_class_appeared", "label_class_disappeared", "label_drift")
ALWAYS_BLOCKING_CHECKS = frozenset({"empty_file", "label_missing", "single_class", "unknown_labels"})
Severity = Literal["blocking", "warning"]
_DEFAULT_SEVERITY: dict[str, Severity] = {"missing_column": "blocking", "new_column": "warning", "dtype_change": "blocking",
                     "null_fraction_spike": "blocking", "unseen_categories": "warning", "out_of_range": "warning",
                     "too_few_rows": "blocking", "duplicate_rows": "warning", "drift": "warning",
                     "identifier_column": "warning",
                     "empty_file": "blocking", "label_missing": "blocking", "single_class": "blocking",
                     "unknown_labels": "blocking",
                     # Multiclass only: a class the production model never saw, or one it knew that is gone.
                     "label_class_appeared": "blocking", "label_class_disappeared": "blocking",
                     "label_drift": "warning"}


class DriftConfig(_Strict):
    """Drift of each feature against the production model's training data."""

    numeric_threshold: float = Field(0.05, gt=0, le=1, description="Largest Jensen-Shannon divergence (base 2) "
                                     "between binned reference and new values.")
    categorical_threshold: float = Field(0.1, gt=0, le=1, description="Largest L-infinity distance between "
                                         "reference and new category shares.")
    features: dict[str, float] = Field(default_factory=dict, description="Per-feature threshold overrides.")
    bins: int = Field(10, ge=2, le=100, description="Numeric features are binned on this many reference quantiles.")
    label_threshold: float = Field(0.1, gt=0, le=1, description="Largest L-infinity distance between reference and "
                                   "new class shares of a multiclass label.")

    @field_validator("features")
    @classmethod
    def _thresholds_in_range(cls, features: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in features.items() if not 0 < v <= 1}
        if bad:
            raise ValueError(f"drift thresholds must be in (0, 1], got {bad}")
        return features


class ValidationConfig(_Strict):
    """Data validation against the production version's data schema."""

    severity: dict[str, Severity] = Field(default_factory=lambda: dict(_DEFAULT_SEVERITY))
    max_null_fraction_increase: float = Field(0.1, ge=0, le=1, description="Allowed rise of a column's null "
                                              "fraction over the reference's.")
    max_unseen_category_share: float = Field(0.01, ge=0, le=1, description="Allowed share of rows whose category "
                                             "the reference never saw.")
    max_out_of_range_share: float = Field(0.01, ge=0, le=1, description="Allowed share of numeric values outside "
                                          "the reference's [min, max].")
    max_duplicate_share: float = Field(0.01, ge=0, le=1, description="Allowed share of fully duplicated rows.")
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @field_validator("severity")
    @classmethod
    def _known_checks(cls, severity: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(severity) - set(VALIDATION_CHECKS))
        if unknown:
            raise ValueError(f"unknown check(s) {unknown}; known: {list(VALIDATION_CHECKS)}")
        downgraded = sorted(c for c in ALWAYS_BLOCKING_CHECKS if severity.get(c) == "warning")
        if downgraded:
            raise ValueError(f"{downgraded} make training impossible and are always blocking")
        return {**_DEFAULT_SEVERITY, **severity}


class SensitiveAttributeConfig(_Strict):
    """A column whose groups are compared; numeric columns are cut into bins."""

    column: str
    bins: list[float] | None = Field(None, description="Cut points for a numeric column, e.g. [30, 50] gives "
                                     "'<30', '30-50', '>=50'.")

    @field_validator("bins")
    @classmethod
    def _increasing(cls, bins: list[float] | None) -> list[float] | None:
        if bins is not None and (not bins or any(later <= earlier for earlier, later in itertools.pairwise(bins))):
            raise ValueError("bins must be a non-empty, strictly increasing list of cut points")
        return bins


class FairnessConfig(_Strict):
    """Group fairness of the candidate on the test split (bounded by ``gate.fairness``)."""

    sensitive_attributes: list[SensitiveAttributeConfig] = Field(
        default_factory=list, description="Columns to compare groups on; they need not be model features.")
    min_group_size: int = Field(30, ge=1, description="Smaller test groups are reported but not bounded.")
    min_group_positives: int = Field(20, ge=1, description="A group's true-positive rate is measured (and bounded "
                                     "by equal opportunity) only with at least this many positive test rows.")
    classes: list[Any] = Field(default_factory=list, description="Multiclass models: classes whose selection rate "
                               "and TPR are measured one-vs-rest; with none, they are skipped, and the gate blocks while a "
                               "gate.fairness bound is set.")

    @model_validator(mode="before")
    @classmethod
    def _threshold_moved(cls, data: Any) -> Any:
        # fairness.threshold was one of three decision rules; there is one now, for every use.
        if isinstance(data, dict) and "threshold" in data:
            raise ValueError("fairness.threshold was replaced by the top-level decision_threshold (one threshold "
                             f"for metrics, fairness and the served class): move {data['threshold']!r} there")
        return data

    @field_validator("sensitive_attributes")
    @classmethod
    def _unique_columns(cls, attributes: list[SensitiveAttributeConfig]) -> list[SensitiveAttributeConfig]:
        repeated = _repeated([a.column for a in attributes])
        if repeated:
            raise ValueError(f"sensitive attributes repeated: {repeated}")
        return attributes


class ImportanceConfig(_Strict):
    """Permutation importance of the candidate's input columns (evaluate step), and how it is bounded."""

    max_rows: int = Field(2000, ge=1, description="Test rows sampled (seeded) for permutation importance.")
    max_features: int = Field(200, ge=1, description="Input columns permuted at most; with more, those most "
                              "associated with the model's predictions are permuted and the rest are not measured.")
    repeats: int = Field(3, ge=1, description="Shuffles per permuted column.")
    time_budget_seconds: float | None = Field(300.0, gt=0, description="Stop permuting once this many seconds are "
                                              "spent (checked between stacked runs); null = no budget.")


class RegistryConfig(_Strict):
    """Where model versions live: a local directory or s3://bucket[/prefix]."""

    uri: str = Field(".tollgate/registry", description="Local directory or s3://bucket[/prefix].")


class KServeDeployConfig(_Strict):
    """How the ``kserve`` deploy target rolls out an InferenceService (see manifests/).

    The rollout itself (``tollgate.cluster.kserve.KServeSettings``) is this class plus what it
    takes from ``monitoring``: there is one definition of these fields and their bounds.
    """

    namespace: str = Field("tollgate", description="Namespace of the InferenceService (the model namespace).")
    service_account: str = Field("tollgate-models", description="Predictor ServiceAccount whose Secret lets the "
                                 "storage-initializer read s3://models.")
    runtime: str = Field("tollgate", description="ClusterServingRuntime that serves the 'tollgate' model format.")
    deployment_mode: Literal["Standard", "Knative"] = Field("Standard", description="KServe deployment mode "
                                                            "(Standard = raw Deployments; Knative = Knative Services).")
    ready_timeout_seconds: float = Field(300, gt=0, description="How long an update may take to be Ready and proven.")
    first_ready_timeout_seconds: float = Field(900, gt=0, description="How long the first deploy may take (its "
                                               "predictor pod pulls the storage-initializer and the serving image).")
    canary_traffic_percent: int | None = Field(None, ge=1, le=99, description="Serve this share of traffic from the "
                                               "new version first (Standard: spec.canary; Knative: "
                                               "canaryTrafficPercent), then promote it.")
    canary_observe_seconds: float = Field(60, ge=0, description="How long a Standard-mode canary must answer with the "
                                        "new version and no errors before it is promoted.")
    smoke_request: bool = Field(True, description="Prove the rollout with real v1 and v2 predictions that must carry "
                                "the new model_version.")
    consecutive_answers: int = Field(5, ge=1, le=100, description="How many answers in a row must come from the new "
                                     "version before it counts as serving.")
    monitoring_secret: str = Field("tollgate-models-s3", description="Secret (keys S3_ENDPOINT, AWS_ACCESS_KEY_ID, "
                                   "AWS_SECRET_ACCESS_KEY) the model server writes an s3:// monitoring.log_uri with.")
    poll_seconds: float = Field(2.0, gt=0, description="How often the rollout reads the InferenceService, the "
                                "Deployment and the answers while it waits.")


class DeployConfig(_Strict):
    """What 'deploy' means after a model passes the gate."""

    target: Literal["local", "kserve"] = "local"
    kserve: KServeDeployConfig = Field(default_factory=KServeDeployConfig)


class RunConfig(_Strict):
    """Local execution settings."""

    root: str = Field(".tollgate/runs", description="Directory for local pipeline runs and their logs.")
    keep_loaded_files_resident: bool = Field(
        True, description="While a local run lasts, keep the library files its tasks loaded mapped in memory, so a "
        "host that reclaims idle page cache does not make each task read them from disk again (Linux; "
        "tollgate/resident.py). Costs no extra memory where those pages were cached anyway.")


class PipelineConfig(_Strict):
    """Compile-time settings of the KFP pipeline."""

    name: str = "tollgate-training"
    image: str = Field("tollgate:0.2.0", description="Component image (built from docker/).")


class KfpConfig(_Strict):
    """Where `tollgate submit` / `schedule` / `runs` find Kubeflow Pipelines, and what pipeline pods need."""

    host: str = Field("http://localhost:30888", description="KFP API endpoint (the kind setup maps it to port 30888).")
    experiment: str = Field("tollgate", description="KFP experiment that runs and recurring runs belong to.")
    registry_uri: str = Field("s3://models", description="Registry as the pipeline pods see it (submit/schedule default).")
    s3_secret: str = Field("tollgate-s3", description="Secret in KFP's namespace (kubeflow) whose S3_ENDPOINT, AWS_ACCESS_KEY_ID "
                           "and AWS_SECRET_ACCESS_KEY become env vars of tasks that touch S3.")


class InfraValidationConfig(_Strict):
    """The infra-validate step: the candidate in a real model server on loopback before promotion."""

    ready_timeout_seconds: float = Field(60.0, gt=0, description="How long the server may take to become ready.")
    sample_rows: int = Field(32, ge=1, le=1024, description="Test rows sent over REST v2 and gRPC.")
    tolerance: float = Field(0.0, ge=0, description="Largest allowed |server - in-process onnxruntime| probability "
                             "difference on the same model.onnx (0: identical).")
    sklearn_tolerance: float = Field(1e-5, ge=0, description="Largest allowed |ONNX graph - scikit-learn Pipeline| "
                                     "probability difference on the test split (the float32 contract).")
    max_class_flips: int | None = Field(None, ge=0, description="Test rows allowed to change class between the "
                                        "Pipeline and the graph; null reports them as a warning only.")


class ServingConfig(_Strict):
    """The model server (`tollgate serve`, the serving image, infra-validation)."""

    http_port: int = Field(8080, ge=1, le=65535, description="REST port (v1 and v2).")
    grpc_port: int = Field(8081, ge=1, le=65535, description="gRPC port (Open Inference Protocol v2).")
    host: str = Field("127.0.0.1", description="Bind address of `tollgate serve` (the serving image uses 0.0.0.0).")
    max_batch: int = Field(1024, ge=1, description="Largest batch a request may carry; larger ones get a 400.")
    unknown_columns: UnknownColumns = Field("reject", description="Columns the model does not know.")
    request_logging: bool = Field(False, description="Log every request (access log, kserve latency lines).")
    infra_validation: InfraValidationConfig = Field(default_factory=InfraValidationConfig)


class MonitoringConfig(_Strict):
    """The model server's prediction log (off unless ``log_uri`` is set) and `tollgate monitor`."""

    log_uri: str | None = Field(None, description="Directory or s3://bucket/prefix for the prediction log; "
                                                     "empty = no log.")
    sample_rate: float = Field(1.0, gt=0.0, le=1.0, description="Share of requests logged.")
    flush_records: int = Field(1000, ge=1, description="Write a file after this many logged requests.")
    flush_seconds: float = Field(10.0, gt=0, description="... or after this many seconds, whichever comes first.")
    queue_size: int = Field(10000, ge=1, description="Requests held in memory before new ones are dropped "
                                                      "(and counted on /metrics).")


class RetrainConfig(_Strict):
    """When a run trains at all (the DAG's first step decides; see README, 'Retrain when it matters')."""

    when: Literal["always", "drift", "new_data"] = Field(
        "always", description="always: every run trains; drift: only when served traffic (or, without a log, the "
                              "new data) drifted from the production version's training data; new_data: only when "
                              "the data fingerprint changed.")


class TollgateConfig(_Strict):
    """The whole configuration."""

    model_name: str = Field("credit-default", pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=50)
    decision_threshold: float = Field(
        DEFAULT_DECISION_THRESHOLD, gt=0, lt=1, description="Binary models: a row is positive when its positive-class probability is >= this "
        "(ties are positive). Test metrics, fairness, infra-validation and the class the server answers all use it; "
        "it is recorded in the version's input_schema.json. Multiclass models take the argmax.")
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    train: TrainConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    importance: ImportanceConfig = Field(default_factory=ImportanceConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    kfp: KfpConfig = Field(default_factory=KfpConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)


def configured_columns(config: TollgateConfig) -> dict[str, list[str]]:
    """The settings besides ``data.target`` and ``data.drop`` that name data columns ingest checks.

    Not ``fairness.sensitive_attributes``: ingest is cached, and a setting only evaluate uses
    must not change its cache key (every candidate would retrain). Validate, which is never
    cached and runs before anything is trained, checks those (:func:`sensitive_columns`).
    """
    named = {"features.numeric": list(config.features.numeric or []),
             "features.categorical": list(config.features.categorical or [])}
    if config.data.window_days and config.data.date_column:
        named["data.date_column"] = [config.data.date_column]
    return {setting: names for setting, names in named.items() if names}


def sensitive_columns(config: TollgateConfig) -> list[str]:
    """The columns ``fairness.sensitive_attributes`` names (checked by validate, measured by evaluate)."""
    return [attribute.column for attribute in config.fairness.sensitive_attributes]


def default_config_text() -> str:
    """The YAML text of the configuration shipped with Tollgate."""
    return resources.files("tollgate").joinpath("defaults/tollgate.yaml").read_text()


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def _format_validation_error(error: ValidationError, origin: str, overridden: frozenset[str] | set[str] = frozenset()
                             ) -> str:
    """Every bad field with its reason; a field set by an override (a CLI option) says so,
    so the message blames what the user actually typed, not the file it never came from."""
    items = error.errors()
    from_overrides = [_overridden_by(item["loc"], overridden) for item in items]
    if all(from_overrides):
        origin = "command-line options"
    elif any(from_overrides):
        origin = f"{origin} and command-line options"
    lines = [f"invalid configuration ({origin}):"]
    for item, override in zip(items, from_overrides, strict=True):
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if override and override.split(", ")[0].count(".") >= len(item["loc"]):  # set inside the section at fault
            suffix = f" (set on the command line: {override})"
        else:
            suffix = f" (set on the command line: {override}={item.get('input')!r})" if override else ""
        lines.append(f"  - {where}: {item['msg']}{suffix}")
    return "\n".join(lines)


def _overridden_by(loc: tuple, overridden: frozenset[str] | set[str]) -> str | None:
    """The override key that set the field at ``loc`` (or one of its parents), if any; for an
    error about a whole section (a section's own validator), the override set inside it."""
    path = [str(p) for p in loc]
    for depth in range(len(path), 0, -1):
        dotted = ".".join(path[:depth])
        if dotted in overridden:
            return dotted
    inside = sorted(key for key in overridden if path and key.startswith(".".join(path) + "."))
    return ", ".join(inside) or None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TollgateConfig:
    """Load the default config, merge the file at ``path`` over it, then apply ``overrides``.

    ``overrides`` maps dotted field paths (``"data.target"``) to values. Raises
    :class:`ConfigError` naming every bad field and why.
    """
    tree = yaml.safe_load(default_config_text())
    origin = "built-in defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            user_tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(user_tree, dict):
            raise ConfigError(f"config file {path} must contain a mapping at the top level")
        # A user file that lists candidates replaces the default list rather than merging into it.
        tree = _deep_merge(tree, user_tree)
        origin = str(path)
    overridden = set()
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, dotted, value)
            overridden.add(dotted)
    try:
        return TollgateConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin, overridden)) from None
