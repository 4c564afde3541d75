"""Each list the code relies on is defined once: metric names, model families, the KServe rollout
settings. Producers make exactly the listed names; consumers read the same definition."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from tollgate.cluster.kserve import KServeSettings
from tollgate.config import (
    METRIC_NAMES,
    MODEL_FAMILIES,
    MULTICLASS_METRIC_NAMES,
    KServeDeployConfig,
    TrainConfig,
    load_config,
)
from tollgate.errors import ConfigError
from tollgate.steps.evaluate import classification_metrics, multiclass_metrics


def test_evaluate_produces_exactly_the_listed_metrics_in_order():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    assert tuple(classification_metrics(y, rng.random(40))) == METRIC_NAMES
    proba = rng.dirichlet(np.ones(3), 60)
    assert tuple(multiclass_metrics(np.arange(60) % 3, proba)) == MULTICLASS_METRIC_NAMES


@pytest.mark.parametrize("field, names", [("selection_metric", METRIC_NAMES),
                                          ("multiclass_selection_metric", MULTICLASS_METRIC_NAMES)])
def test_the_selector_accepts_exactly_the_listed_metrics(field, names):
    candidates = [{"name": "a", "family": MODEL_FAMILIES[0]}]
    for name in names:
        assert getattr(TrainConfig(candidates=candidates, **{field: name}), field) == name
    other = MULTICLASS_METRIC_NAMES if names is METRIC_NAMES else METRIC_NAMES
    for name in sorted(set(other) - set(names)):
        with pytest.raises(ValidationError) as raised:
            TrainConfig(candidates=candidates, **{field: name})
        assert [(error["loc"], error["type"]) for error in raised.value.errors()] == [((field,), "literal_error")]


def test_every_listed_family_is_a_valid_candidate_and_nothing_else_is(tmp_path):
    path = tmp_path / "families.yaml"
    listed = "\n".join(f"    - {{name: c{i}, family: {family}}}" for i, family in enumerate(MODEL_FAMILIES))
    path.write_text(f"train:\n  candidates:\n{listed}\n")
    assert [c.family for c in load_config(path).train.candidates] == list(MODEL_FAMILIES)
    path.write_text("train:\n  candidates:\n    - {name: x, family: xgboost}\n")
    with pytest.raises(ConfigError, match="train.candidates.0.family"):
        load_config(path)


def test_the_rollout_settings_are_the_config_section_with_its_bounds():
    assert issubclass(KServeSettings, KServeDeployConfig)
    config = load_config(None, {"deploy.kserve.canary_traffic_percent": 30, "deploy.kserve.poll_seconds": 0.5,
                                "deploy.kserve.monitoring_secret": "logs-s3",
                                "monitoring.log_uri": "s3://monitoring/log"})
    settings = KServeSettings.from_config(config.deploy.kserve, config.monitoring)
    # Every deploy.kserve field reaches the rollout as configured.
    assert {k: getattr(settings, k) for k in KServeDeployConfig.model_fields} == config.deploy.kserve.model_dump()
    assert settings.log_secret == "logs-s3" and settings.log_args[0] == "--log-uri=s3://monitoring/log"
    # The config's bounds hold for the rollout too (the old mirror accepted these).
    for bad, refusal in (({"canary_traffic_percent": 100}, "less_than_equal"), ({"deployment_mode": "Serverless"}, "literal_error"),
                         ({"consecutive_answers": 0}, "greater_than_equal"), ({"nmespace": "typo"}, "extra_forbidden")):
        with pytest.raises(ValidationError) as raised:
            KServeSettings(**bad)
        assert [(error["loc"], error["type"]) for error in raised.value.errors()] == [(tuple(bad), refusal)]
    with pytest.raises(ValidationError) as raised:
        settings.namespace = "other"  # frozen, like the dataclass it replaced
    assert [(error["loc"], error["type"]) for error in raised.value.errors()] == [(("namespace",), "frozen_instance")]


def test_the_model_server_flags_take_the_config_sections_defaults_and_bounds():
    # The serving entry point's flags mirror serving.* and monitoring.*: their defaults are the
    # config's, and a value the config refuses is refused at the command line with the flag's name.
    import subprocess
    import sys

    from tollgate.config import MonitoringConfig, ServingConfig
    from tollgate.serving.__main__ import build_parser

    flags = build_parser().parse_args([])
    serving, monitoring = ServingConfig(), MonitoringConfig()
    assert (flags.max_batch, flags.unknown_columns, flags.http_port, flags.grpc_port) == \
        (serving.max_batch, serving.unknown_columns, serving.http_port, serving.grpc_port)
    assert (flags.log_sample_rate, flags.log_flush_records, flags.log_flush_seconds, flags.log_queue_size) == \
        (monitoring.sample_rate, monitoring.flush_records, monitoring.flush_seconds, monitoring.queue_size)
    for args, message in ((["--max-batch", "0"], "--max-batch: Input should be greater than or equal to 1"),
                          (["--log-sample-rate", "2"], "--log-sample-rate: Input should be less than or equal to 1")):
        result = subprocess.run([sys.executable, "-m", "tollgate.serving", "--model-dir", "/nonexistent", *args],
                                capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stderr.strip()) == (2, f"error: {message}"), args


def test_the_unknown_column_policies_are_listed_once_and_every_reader_takes_exactly_them():
    # serving.unknown_columns, the model server's --unknown-columns flag and the compiled input
    # schema used to spell the two policies out each; now each reads tollgate.metrics' list.
    from tollgate.config import ServingConfig
    from tollgate.metrics import UNKNOWN_COLUMN_POLICIES
    from tollgate.serving.__main__ import build_parser
    from tollgate.serving.schema import ColumnSpec, InputSchema

    assert UNKNOWN_COLUMN_POLICIES == ("reject", "ignore")
    flag = next(a for a in build_parser()._actions if a.dest == "unknown_columns")
    assert tuple(flag.choices) == UNKNOWN_COLUMN_POLICIES
    columns = [ColumnSpec(name="x", role="numeric", dtype="float64", nullable=False)]
    for policy in UNKNOWN_COLUMN_POLICIES:
        assert ServingConfig(unknown_columns=policy).unknown_columns == policy
        assert InputSchema(columns, unknown_columns=policy).reject_unknown is (policy == "reject")
    with pytest.raises(ValidationError) as raised:
        ServingConfig(unknown_columns="drop")
    assert raised.value.errors()[0]["ctx"] == {"expected": "'reject' or 'ignore'"}
    with pytest.raises(ValueError, match=r"^unknown_columns must be one of \['reject', 'ignore'\], got 'drop'$"):
        InputSchema(columns, unknown_columns="drop")
