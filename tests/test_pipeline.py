"""The whole DAG through the real CLI and kfp.local, as a user runs it.

The tests in this module share one registry and run in order: run 1 (no champion),
run 2 (sees run 1's champion), a run the gate blocks, then the `models` commands.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL_CANDIDATES
from tollgate.steps.gate import Champion, Policy, decide

pytestmark = pytest.mark.pipeline

ALL_STEPS = {"ingest", "validate", "preprocess", "train", "select", "evaluate", "gate",
             "infra-validate", "register", "deploy", "report"}


def tollgate(*args, check=True):
    """Run the installed `tollgate` CLI in a subprocess, as a user would."""
    result = subprocess.run([sys.executable, "-m", "tollgate.cli", *args], capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"tollgate {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    config = {
        "registry": {"uri": str(root / "registry")},
        "run": {"root": str(root / "runs")},
        "data": {"builtin": {"rows": 1500}},
        "train": {"candidates": SMALL_CANDIDATES},
    }
    path = root / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"root": root, "config": str(path), "registry": root / "registry"}


@pytest.fixture(scope="module")
def first_run(workspace):
    result = tollgate("run", "--config", workspace["config"], "--json")
    return json.loads(result.stdout)  # stdout must be exactly one JSON document, no KFP noise


@pytest.fixture(scope="module")
def second_run(workspace, first_run):
    # A different grid makes a challenger that genuinely differs from the champion.
    other = yaml.safe_load(Path(workspace["config"]).read_text())
    other["train"]["candidates"] = [{"name": "sparse", "family": "logistic_regression",
                                     "params": {"max_iter": 500}, "grid": {"C": [0.01]}}]
    path = workspace["root"] / "second.yaml"
    path.write_text(yaml.safe_dump(other))
    return json.loads(tollgate("run", "--config", str(path), "--json").stdout)


def test_first_run_has_no_champion_and_registers_v1(first_run, workspace):
    assert first_run["succeeded"]
    assert {step["step"] for step in first_run["steps"]} == ALL_STEPS
    assert all(step["status"] == "SUCCESS" for step in first_run["steps"])
    assert next(s for s in first_run["steps"] if s["step"] == "train")["tasks"] == 3
    assert first_run["champion"] is None
    assert first_run["gate"]["passed"]
    assert "no champion yet" in first_run["gate"]["reasons"][0]
    assert first_run["registered_version"] == 1
    assert first_run["aliases"]["production"]["version"] == 1
    assert first_run["candidate"]["candidate_id"] in {row["candidate_id"] for row in first_run["leaderboard"]}
    version_dir = workspace["registry"] / "credit-default" / "v1"
    assert {p.name for p in version_dir.iterdir()} >= {"model.onnx", "model.joblib", "input_schema.json",
                                                      "metadata.json"}
    metadata = json.loads((version_dir / "metadata.json").read_text())
    # The gate's numbers are the served bytes' numbers: the registered model.onnx, run again on the
    # run's test split, gives exactly the test metrics the gate saw.
    from tollgate.artifacts import read_frame
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.evaluate import classification_metrics

    test_split = read_frame(next(Path(first_run["run_dir"]).glob("**/preprocess/test")))
    graph = OnnxModel.from_file(version_dir / "model.onnx", json.loads((version_dir / "input_schema.json").read_text()))
    served = classification_metrics(test_split["__label__"].to_numpy(), graph.predict_proba(test_split)[:, 1])
    assert served == first_run["candidate"]["test_metrics"]
    infra = first_run["infra_validation"]
    assert infra["passed"] and infra["max_abs_difference"] == {"rest-v2": 0.0, "grpc": 0.0}
    assert infra["sklearn_agreement"]["max_abs_difference"] <= 1e-5
    assert metadata["test_metrics"] == first_run["candidate"]["test_metrics"]
    assert metadata["data"]["fingerprint"].startswith("sha256:") and metadata["data"]["rows"] == 1500
    assert metadata["pipeline_run_id"] and metadata["code_version"] and metadata["replaced_champion"] is None
    # The executor dumps went to the log file, not the console.
    run_dir = Path(first_run["run_dir"])
    assert "executor_input" in (run_dir / "kfp.log").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["registered_version"] == 1


def test_second_run_compares_with_the_champion_on_the_same_test_set(first_run, second_run, workspace):
    champion = second_run["champion"]
    assert champion["version"] == 1
    # Same data and split: the champion scores exactly what it scored when it was registered.
    assert champion["metrics"] == pytest.approx(first_run["candidate"]["test_metrics"])
    challenger = second_run["candidate"]["test_metrics"]
    assert challenger["roc_auc"] != pytest.approx(champion["metrics"]["roc_auc"])
    # The gate's verdict is exactly what the policy says for these two different sets of numbers.
    expected = decide(challenger, Champion(1, champion["metrics"]),
                      Policy(absolute={"roc_auc": {"min": 0.7}, "pr_auc": {"min": 0.4}},
                             max_degradation={"roc_auc": 0.005, "pr_auc": 0.01}))
    assert second_run["gate"]["passed"] == expected.passed
    assert second_run["gate"]["reasons"] == expected.reasons
    if expected.passed:
        assert second_run["registered_version"] == 2
        assert second_run["aliases"]["production"]["version"] == 2
        assert second_run["aliases"]["previous"]["version"] == 1
    else:
        assert "registered_version" not in second_run
        assert second_run["aliases"]["production"]["version"] == 1


def test_blocked_candidate_registers_nothing_and_leaves_aliases(workspace, second_run):
    registry = workspace["registry"] / "credit-default"
    strict_config = yaml.safe_load(Path(workspace["config"]).read_text())
    strict_config["gate"] = {"absolute": {"roc_auc": {"min": 0.99}}}  # no model here can meet this
    path = workspace["root"] / "strict.yaml"
    path.write_text(yaml.safe_dump(strict_config))
    aliases_before = (registry / "aliases.json").read_text()
    versions_before = sorted(p.name for p in registry.iterdir() if p.is_dir())

    blocked = tollgate("run", "--config", str(path))
    assert "BLOCKED" in blocked.stdout and "fails the threshold >= 0.99" in blocked.stdout
    assert "Nothing registered; aliases unchanged." in blocked.stdout
    assert "executor_input" not in blocked.stdout
    assert (registry / "aliases.json").read_text() == aliases_before
    assert sorted(p.name for p in registry.iterdir() if p.is_dir()) == versions_before
    summary = json.loads((Path(sorted((workspace["root"] / "runs").iterdir())[-1]) / "summary.json").read_text())
    assert not summary["gate"]["passed"]
    assert {step["step"] for step in summary["steps"]}.isdisjoint({"infra-validate", "register", "deploy"})
    # Scripts can ask for a distinct exit code when the gate blocks (a failed run is 1).
    strict = tollgate("run", "--config", str(path), "--fail-on-block", "--json", check=False)
    assert strict.returncode == 3, strict.stderr
    assert json.loads(strict.stdout)["gate"]["passed"] is False


def test_bad_input_fails_fast_with_the_reason(workspace):
    result = tollgate("run", "--config", workspace["config"], "--target", "no_such_column", check=False)
    assert result.returncode == 1
    assert "target column 'no_such_column' is not in the data" in result.stdout
    assert "Run failed in ingest" in result.stdout
    # The failed run's HTML report carries the error, not an empty page.
    report = Path(result.stdout.split("Report ")[1].split()[0]).read_text()
    assert "Run failed:" in report and "target column &#39;no_such_column&#39; is not in the data" in report
    bad = tollgate("run", "--config", workspace["config"], "--model-name", "Bad Name", check=False)
    assert bad.returncode == 1 and "model_name" in bad.stderr


def test_models_commands_list_show_promote_rollback(workspace, second_run):
    common = ["--config", workspace["config"], "--json"]
    listing = json.loads(tollgate("models", "list", *common).stdout)
    versions = [v["version"] for v in listing["versions"]]
    assert versions[0] == 1 and versions == sorted(versions)
    production = listing["aliases"]["production"]["version"]

    shown = json.loads(tollgate("models", "show", "production", *common).stdout)
    assert shown["version"] == production and "production" in shown["aliases"]
    assert shown["metadata"]["test_metrics"]["roc_auc"] > 0.5

    if len(versions) == 1:
        # Run 2 may rightly have been blocked; add a second version directly to exercise promote.
        from tollgate.registry import open_registry

        registry = open_registry(str(workspace["registry"]))
        registry.register("credit-default", workspace["registry"] / "credit-default" / "v1", {"note": "copy"})
        versions.append(2)
    target = next(v for v in versions if v != production)
    promoted = json.loads(tollgate("models", "promote", f"v{target}", *common).stdout)
    assert promoted["aliases"]["production"]["version"] == target
    assert promoted["aliases"]["previous"]["version"] == production
    rolled = json.loads(tollgate("models", "rollback", *common).stdout)
    assert rolled["aliases"]["production"]["version"] == production

    missing = tollgate("models", "promote", "v999", "--config", workspace["config"], check=False)
    assert missing.returncode == 1 and "v999 does not exist" in missing.stderr
    table = tollgate("models", "list", "--config", workspace["config"]).stdout
    assert "v1" in table and "production" in table
