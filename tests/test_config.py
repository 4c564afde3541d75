"""Configuration: defaults, files, overrides, and errors that name the field."""

import pytest

from tollgate.config import load_config
from tollgate.errors import ConfigError


def test_defaults_load_and_have_two_model_families():
    config = load_config()
    assert config.model_name == "credit-default"
    assert {c.family for c in config.train.candidates} >= {"logistic_regression", "hist_gradient_boosting"}
    assert config.gate.absolute["roc_auc"].min == 0.70


def test_file_merges_over_defaults_and_overrides_win(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("data:\n  target: churned\n  drop: [customer_id]\nmodel_name: churn\n")
    config = load_config(path, {"data.target": "label", "registry.uri": "s3://models"})
    assert config.data.target == "label"           # CLI override beats the file
    assert config.data.drop == ["customer_id"]      # file beats defaults
    assert config.model_name == "churn"
    assert config.data.min_rows == 200              # untouched default kept
    assert config.registry.uri == "s3://models"


@pytest.mark.parametrize("yaml_text, expected", [
    ("data:\n  targt: x\n", "data.targt: Extra inputs are not permitted"),
    ("split:\n  test_size: 0.7\n", "split.test_size"),
    ("split:\n  test_size: 0.4\n  validation_size: 0.45\n", "at least 20% of rows for training"),
    ("train:\n  selection_metric: auc\n", "train.selection_metric"),
    ("gate:\n  absolute:\n    auc: {min: 0.7}\n", "unknown metric(s) ['auc']"),
    ("gate:\n  max_degradation:\n    roc_auc: -0.1\n", "tolerances must be >= 0"),
    ("model_name: Credit_Model\n", "model_name"),
    ("train:\n  candidates:\n    - {name: a, family: logistic_regression}\n    - {name: a, family: random_forest}\n",
     "candidate names must be unique, repeated: ['a']"),
    ("train:\n  candidates:\n    - {name: a, family: xgboost}\n", "train.candidates.0.family"),
    ("train:\n  candidates:\n    - {name: a, family: random_forest, grid: {n_estimators: []}}\n",
     "grid entry 'n_estimators' has no values"),
])
def test_bad_config_names_the_field_and_reason(tmp_path, yaml_text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert expected in str(error.value)
    assert str(path) in str(error.value)


def test_missing_file_and_invalid_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(scalar)
