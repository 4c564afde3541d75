"""What each DAG task receives of the config: typed views of :class:`~tollgate.config.TollgateConfig`.

A KFP task's cache key includes every parameter it receives. Passing the whole config to
every task would make an unrelated edit (``serving.max_batch``, a gate threshold) change the
cache key of ingest and preprocess, so on a cluster every candidate would retrain. Each task
therefore receives one of these views, holding exactly the settings its step uses, as a
compile-time JSON constant; ``tests/test_task_settings.py`` changes one setting of each kind
at a time and checks that only the tasks using it see a different parameter.

The views are built from the one config (``X.from_config(config)``), never written by hand,
so there is still one place where each setting is defined, validated and documented.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tollgate.config import (
    BuiltinDataConfig,
    CsvConfig,
    FairnessConfig,
    FeaturesConfig,
    ImportanceConfig,
    InfraValidationConfig,
    KServeDeployConfig,
    MonitoringConfig,
    SplitConfig,
    TollgateConfig,
    ValidationConfig,
    configured_columns,
    sensitive_columns,
)


class _TaskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        """The task parameter: deterministic JSON (same settings, same text, same cache key)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.model_validate_json(text)


class IngestSettings(_TaskSettings):
    """Ingest: how to read the table and which columns the config names (checked at the start).
    Where the table is (``data.source``) is not here: it is the run's ``data_source`` parameter
    (default ``data.source``), so it enters ingest's cache key once, as what this run reads."""

    target: str
    drop: list[str]
    builtin: BuiltinDataConfig
    date_column: str | None
    window_days: int | None
    csv: CsvConfig
    numeric: list[str] | None
    configured: dict[str, list[str]]

    @classmethod
    def from_config(cls, config: TollgateConfig) -> IngestSettings:
        data = config.data
        return cls(target=data.target, drop=list(data.drop), builtin=data.builtin,
                   date_column=data.date_column, window_days=data.window_days, csv=data.csv,
                   numeric=config.features.numeric, configured=configured_columns(config))


class ValidateSettings(_TaskSettings):
    """Validate: the label, the columns it ignores, the ``validation`` policy, and the columns
    fairness will measure (checked here: validate is never cached, ingest and preprocess are)."""

    target: str
    positive_label: Any
    task: str
    min_rows: int
    ignored: list[str]
    drop_identifiers: bool
    validation: ValidationConfig
    sensitive_columns: list[str]

    @classmethod
    def from_config(cls, config: TollgateConfig) -> ValidateSettings:
        data = config.data
        return cls(target=data.target, positive_label=data.positive_label, task=data.task, min_rows=data.min_rows,
                   ignored=list(data.drop) + ([data.date_column] if data.date_column else []),
                   drop_identifiers=data.drop_identifiers, validation=config.validation,
                   sensitive_columns=sensitive_columns(config))


class PreprocessSettings(_TaskSettings):
    """Preprocess: feature roles and the split. (The test split carries every raw column, so the
    columns fairness measures need no setting here.)"""

    target: str
    positive_label: Any
    task: str
    drop: list[str]
    date_column: str | None
    drop_identifiers: bool
    features: FeaturesConfig
    split: SplitConfig
    # Recorded in the binary input schema: every later decision (evaluate, infra-validate, the server) reads it there.
    decision_threshold: float

    @classmethod
    def from_config(cls, config: TollgateConfig) -> PreprocessSettings:
        data = config.data
        return cls(target=data.target, positive_label=data.positive_label, task=data.task, drop=list(data.drop),
                   date_column=data.date_column, drop_identifiers=data.drop_identifiers, features=config.features,
                   split=config.split, decision_threshold=config.decision_threshold)


class EvaluateSettings(_TaskSettings):
    """Evaluate: group fairness and the bounds of permutation importance (all scoring needs besides
    the artifacts)."""

    fairness: FairnessConfig
    importance: ImportanceConfig

    @classmethod
    def from_config(cls, config: TollgateConfig) -> EvaluateSettings:
        return cls(fairness=config.fairness, importance=config.importance)


class InfraValidateSettings(_TaskSettings):
    """Infra-validate: how the candidate is served and how closely its answers must agree."""

    infra_validation: InfraValidationConfig
    max_batch: int
    unknown_columns: str

    @classmethod
    def from_config(cls, config: TollgateConfig) -> InfraValidateSettings:
        serving = config.serving
        return cls(infra_validation=serving.infra_validation, max_batch=serving.max_batch,
                   unknown_columns=serving.unknown_columns)


class DeploySettings(_TaskSettings):
    """Deploy: the target, the KServe rollout settings, and the prediction log the server writes."""

    target: str
    kserve: KServeDeployConfig
    monitoring: MonitoringConfig

    @classmethod
    def from_config(cls, config: TollgateConfig) -> DeploySettings:
        return cls(target=config.deploy.target, kserve=config.deploy.kserve, monitoring=config.monitoring)


class RetrainSettings(_TaskSettings):
    """Retrain-check: when to retrain, how ingest reads the incoming data (it is compared with the
    production version's), validation's drift thresholds, and where the server logs its traffic."""

    when: str
    ingest: IngestSettings
    validation: ValidationConfig
    log_uri: str | None

    @classmethod
    def from_config(cls, config: TollgateConfig) -> RetrainSettings:
        return cls(when=config.retrain.when, ingest=IngestSettings.from_config(config), validation=config.validation,
                   log_uri=config.monitoring.log_uri)
