"""Each DAG task receives only the settings it uses, so its KFP cache key moves only when they do.

KFP's cache key includes every parameter a task receives. These tests compile the real DAG
(pipelines/training.py) to IR and read each task's constant parameters, the values the
cache key is computed from. Before per-task settings, ingest, validate, preprocess,
infra-validate and deploy all received the whole config: changing ``serving.max_batch``
changed the cache key of ingest and preprocess, and every candidate retrained.
"""

import dataclasses
import json

import pytest
import yaml

from tests.conftest import make_config
from tollgate.config import TollgateConfig
from tollgate.pipelines.training import compile_pipeline
from tollgate.settings import (
    DeploySettings,
    EvaluateSettings,
    InfraValidateSettings,
    IngestSettings,
    PreprocessSettings,
    RetrainSettings,
    ValidateSettings,
)
from tollgate.steps.gate import GatePolicy

# The tasks whose results KFP may serve from its cache (the others set caching off).
CACHED = ("ingest", "preprocess", "train", "select")


def task_parameters(config, tmp_path) -> dict[str, dict[str, object]]:
    """``{task: {parameter: constant}}`` of the compiled DAG, sub-DAGs (ParallelFor, dsl.If) included."""
    package = compile_pipeline(config, tmp_path / f"pipeline-{len(list(tmp_path.iterdir()))}.yaml")
    spec = next(yaml.safe_load_all(package.read_text()))  # the second document is the platform spec
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    found: dict[str, dict[str, object]] = {}
    for dag in dags:
        for name, task in dag.get("tasks", {}).items():
            found.setdefault(name, {}).update({key: value["runtimeValue"].get("constant")
                           for key, value in task.get("inputs", {}).get("parameters", {}).items()
                           if "runtimeValue" in value})
            if "parameterIterator" in task:  # the ParallelFor: its items are the train tasks' only constants
                found["train"] = {"candidate": task["parameterIterator"]["items"]}
    return found


def changed_tasks(base: dict, other: dict) -> set[str]:
    return {task for task in base if base[task] != other.get(task)}


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("task-settings")


@pytest.fixture(scope="module")
def baseline(module_tmp):
    return task_parameters(make_config(module_tmp), module_tmp)


@pytest.mark.parametrize("overrides, may_change", [
    # Serving and infra-validation settings: only infra-validate re-runs.
    ({"serving.max_batch": 64}, {"infra-validate"}),
    ({"serving.infra_validation.sample_rows": 8}, {"infra-validate"}),
    # Gate policy: only the (never cached) gate sees it.
    ({"gate.max_degradation": {"roc_auc": 0.05}}, {"gate"}),
    # Deploy and monitoring: only deploy.
    ({"deploy.kserve.namespace": "other"}, {"deploy"}),
    ({"monitoring.sample_rate": 0.5}, {"deploy"}),
    # Validation policy: only validate (never cached) — training is not redone for a new drift threshold.
    ({"validation.max_duplicate_share": 0.2}, {"validate"}),
    # The split and the feature roles change what is trained: preprocess, and therefore train, re-run.
    ({"split.seed": 7}, {"preprocess", "train"}),
    # data.min_rows is a validate-only setting.
    ({"data.min_rows": 50}, {"validate"}),
    # The decision threshold is recorded in the input schema by preprocess; train, evaluate, infra-validate,
    # register and the server read it from the feature spec, so no other task takes it as a parameter.
    ({"decision_threshold": 0.3}, {"preprocess"}),
    # The attributes fairness measures: evaluate measures them, validate checks they exist (both never cached).
    ({"fairness.sensitive_attributes": [{"column": "gender"}]}, {"evaluate", "validate"}),
    # How far permutation importance goes: only evaluate (never cached).
    ({"importance.max_features": 50}, {"evaluate"}),
])
def test_a_setting_changes_only_the_tasks_that_use_it(module_tmp, baseline, overrides, may_change):
    changed = changed_tasks(baseline, task_parameters(make_config(module_tmp, **overrides), module_tmp))
    assert changed, f"{overrides} changed no task parameter: the test would not notice a leak"
    assert changed <= may_change, f"{overrides} also changed {sorted(changed - may_change)}"
    assert not (changed - may_change) & set(CACHED)


def test_reading_options_reach_ingest_and_nothing_trained_downstream_of_it_is_spared(module_tmp, baseline):
    """The converse: a setting a cached task uses does change its key (no stale cache)."""
    changed = changed_tasks(baseline, task_parameters(make_config(module_tmp, **{"data.csv.separator": ";"}),
                                                      module_tmp))
    assert "ingest" in changed


def test_the_data_source_is_the_runs_parameter_and_enters_ingest_once(module_tmp, baseline):
    """data.source is the pipeline's data_source parameter (its default), which ingest receives; it is
    not also in ingest's settings, so a run reading the same table has the same key whatever the
    compiled config's data.source said."""
    config = make_config(module_tmp, **{"data.source": "/data/elsewhere.csv"})
    assert changed_tasks(baseline, task_parameters(config, module_tmp)) == set()
    assert "source" not in IngestSettings.model_fields
    package = compile_pipeline(config, module_tmp / "pipeline-source.yaml")
    spec = next(yaml.safe_load_all(package.read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["data_source"]["defaultValue"] == "/data/elsewhere.csv"
    ingest = spec["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]["data_source"]
    assert ingest == {"componentInputParameter": "data_source"}


# The settings parameter of each task and the one view of the config it must carry, exactly.
# (retrain-check exists only when retrain.when is drift or new_data: see the test after the next.)
EXPECTED_SETTINGS = {"ingest": ("settings_json", IngestSettings), "validate": ("settings_json", ValidateSettings),
                     "preprocess": ("settings_json", PreprocessSettings),
                     "evaluate": ("settings_json", EvaluateSettings),
                     "infra-validate": ("settings_json", InfraValidateSettings),
                     "deploy": ("settings_json", DeploySettings), "gate": ("policy_json", GatePolicy)}


def _field_names(view) -> set[str]:
    """A settings view's fields: a pydantic model's, or (the gate's policy, read without pydantic) a dataclass's."""
    return set(view.model_fields) if hasattr(view, "model_fields") else {f.name for f in dataclasses.fields(view)}


def test_each_task_receives_exactly_its_own_settings_and_none_the_whole_config(baseline):
    json_parameters = {(task, name) for task, parameters in baseline.items() for name in parameters
                       if name.endswith("_json")}
    assert json_parameters == {(task, name) for task, (name, _) in EXPECTED_SETTINGS.items()}
    for task, (name, view) in EXPECTED_SETTINGS.items():
        keys = set(json.loads(baseline[task][name]))
        assert keys == _field_names(view), f"{task}.{name} carries {sorted(keys ^ _field_names(view))}"
        assert not set(TollgateConfig.model_fields) <= keys, f"{task}.{name} carries the whole config"


def test_retrain_check_receives_exactly_its_own_settings(module_tmp):
    for when in ("drift", "new_data"):
        tasks = task_parameters(make_config(module_tmp, **{"retrain.when": when}), module_tmp)
        settings = json.loads(tasks["retrain-check"]["settings_json"])
        assert set(settings) == set(RetrainSettings.model_fields) and settings["when"] == when
        assert {name for name in tasks["retrain-check"] if name.endswith("_json")} == {"settings_json"}
    # What it does not use leaves it alone; what it uses reaches it.
    drift = task_parameters(make_config(module_tmp, **{"retrain.when": "drift"}), module_tmp)
    other = task_parameters(make_config(module_tmp, **{"retrain.when": "drift", "serving.max_batch": 64,
                                                       "gate.max_degradation": {"roc_auc": 0.05}}), module_tmp)
    assert other["retrain-check"] == drift["retrain-check"]
    logged = task_parameters(make_config(module_tmp, **{"retrain.when": "drift", "monitoring.log_uri": "/logs"}),
                             module_tmp)
    assert json.loads(logged["retrain-check"]["settings_json"])["log_uri"] == "/logs"


@pytest.mark.parametrize("view", [IngestSettings, ValidateSettings, PreprocessSettings, EvaluateSettings,
                                  InfraValidateSettings, DeploySettings, RetrainSettings])
def test_settings_round_trip_and_refuse_unknown_keys(module_tmp, view):
    settings = view.from_config(make_config(module_tmp))
    assert view.from_json(settings.to_json()) == settings
    assert settings.to_json() == view.from_config(make_config(module_tmp)).to_json()  # deterministic text
    broken = json.loads(settings.to_json())
    broken["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        view.from_json(json.dumps(broken))


def test_the_gate_receives_the_gate_section_as_a_typed_policy_for_each_task(module_tmp):
    config = make_config(module_tmp, **{"gate.max_degradation": {"roc_auc": 0.02},
                                        "gate.multiclass.absolute": {"f1_macro": {"min": 0.3}},
                                        "gate.fairness.min_disparate_impact": 0.75})
    policy = GatePolicy.from_json(task_parameters(config, module_tmp)["gate"]["policy_json"])
    assert policy.binary.max_degradation["roc_auc"] == 0.02 and policy.binary.fairness["min_disparate_impact"] == 0.75
    assert policy.multiclass.absolute == {"f1_macro": {"min": 0.3, "max": None}}
    assert policy.multiclass.fairness == policy.binary.fairness  # the same fairness bounds for either task
    assert policy.for_task("multiclass") is policy.multiclass and policy.for_task("binary") is policy.binary
