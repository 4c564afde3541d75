"""The whole DAG through the real CLI and kfp.local, as a user runs it.

The tests in this module share one registry and run in order, each gate verdict fixed in
advance by the models compared (never by asking the gate what it would say):

1. a deliberately weak model (one tree with a single split), no champion: promoted as v1;
2. the small grid (clearly better than one split) against champion v1: promoted as v2;
3. the one-split model again against champion v2: blocked by the change thresholds;

then the `models` commands on the two versions.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL_CANDIDATES

pytestmark = pytest.mark.pipeline

# One tree with one split: it ranks applicants by a single feature (test ROC AUC 0.56-0.63 on these
# rows over eight split seeds, against 0.74-0.79 for the small grid; PR AUC 0.25-0.31 against
# 0.46-0.55), so it is clearly worse than any model of the grid, whichever rows the split tests on.
ONE_SPLIT = [{"name": "one-split", "family": "hist_gradient_boosting",
              "params": {"max_iter": 1, "max_leaf_nodes": 2}, "grid": {}}]
# Absolute thresholds the one-split model meets, so that what blocks run 3 is the comparison alone;
# the change thresholds are the defaults (roc_auc 0.005, pr_auc 0.01).
LENIENT_GATE = {"absolute": {"roc_auc": {"min": 0.5}, "pr_auc": {"min": 0.15}}}
CLEARLY = 0.05  # far beyond the change tolerances, so the verdicts cannot hinge on noise

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
        "data": {"builtin": {"rows": 3000}},
        "train": {"candidates": SMALL_CANDIDATES},
        "gate": LENIENT_GATE,
    }
    path = root / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config))
    weak = root / "one-split.yaml"
    weak.write_text(yaml.safe_dump({**config, "train": {"candidates": ONE_SPLIT}}))
    return {"root": root, "config": str(path), "weak_config": str(weak), "registry": root / "registry"}


@pytest.fixture(scope="module")
def first_run(workspace):
    result = tollgate("run", "--config", workspace["weak_config"], "--json")
    return json.loads(result.stdout)  # stdout must be exactly one JSON document, no KFP noise


@pytest.fixture(scope="module")
def second_run(workspace, first_run):
    return json.loads(tollgate("run", "--config", workspace["config"], "--json").stdout)


def test_first_run_has_no_champion_and_registers_v1(first_run, workspace):
    assert first_run["succeeded"]
    assert {step["step"] for step in first_run["steps"]} == ALL_STEPS
    assert all(step["status"] == "SUCCESS" for step in first_run["steps"])
    assert next(s for s in first_run["steps"] if s["step"] == "train")["tasks"] == 1
    assert first_run["champion"] is None
    # With no champion only the absolute thresholds apply, and the one-split model meets them.
    assert first_run["gate"]["passed"] is True
    assert first_run["gate"]["reasons"] == ["no champion yet: absolute thresholds passed, change thresholds skipped"]
    assert first_run["candidate"]["candidate_id"] == "one-split"
    assert 0.5 <= first_run["candidate"]["test_metrics"]["roc_auc"] < 0.7
    assert first_run["registered_version"] == 1 and first_run["promoted"] is True
    assert first_run["aliases"]["production"]["version"] == 1
    assert first_run["candidate"]["candidate_id"] in {row["candidate_id"] for row in first_run["leaderboard"]}
    version_dir = workspace["registry"] / "credit-default" / "v1"
    # Exactly the files README's registry layout lists: the run's working files (candidate and
    # selection records, reference probabilities) stay with the run.
    assert {p.name for p in version_dir.iterdir()} == {"model.onnx", "model.joblib", "input_schema.json",
                                                      "data_schema.json", "metadata.json", "_COMPLETE"}
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
    assert metadata["data"]["fingerprint"].startswith("sha256:") and metadata["data"]["rows"] == 3000
    assert metadata["pipeline_run_id"] and metadata["code_version"] and metadata["replaced_champion"] is None
    # The executor dumps went to the log file, not the console.
    run_dir = Path(first_run["run_dir"])
    assert "executor_input" in (run_dir / "kfp.log").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["registered_version"] == 1


def test_a_clearly_better_challenger_replaces_a_weak_champion(first_run, second_run, workspace):
    champion = second_run["champion"]
    assert champion["version"] == 1
    # Same data and split: the champion scores exactly what it scored when it was registered.
    assert champion["metrics"] == pytest.approx(first_run["candidate"]["test_metrics"])
    assert next(s for s in second_run["steps"] if s["step"] == "train")["tasks"] == 3  # the grid fans out
    challenger = second_run["candidate"]["test_metrics"]
    # The premise, fixed by the models chosen: the grid beats one split by far on both gated metrics.
    for metric in ("roc_auc", "pr_auc"):
        assert challenger[metric] > champion["metrics"][metric] + CLEARLY, metric
    assert second_run["gate"]["passed"] is True
    assert second_run["gate"]["reasons"] == ["meets every threshold and is within tolerance of champion v1"]
    assert second_run["registered_version"] == 2 and second_run["promoted"] is True
    assert second_run["aliases"]["production"]["version"] == 2
    assert second_run["aliases"]["previous"]["version"] == 1
    metadata = json.loads((workspace["registry"] / "credit-default" / "v2" / "metadata.json").read_text())
    assert metadata["replaced_champion"] == 1 and metadata["test_metrics"] == challenger


def test_a_clearly_worse_challenger_is_blocked_by_the_change_thresholds(workspace, second_run):
    registry = workspace["registry"] / "credit-default"
    aliases_before = (registry / "aliases.json").read_text()
    versions_before = sorted(p.name for p in registry.iterdir() if p.is_dir())

    # The one-split model again, now against champion v2; scripts ask for a distinct exit code when
    # the gate blocks (a failed run is 1).
    blocked = tollgate("run", "--config", workspace["weak_config"], "--fail-on-block", check=False)
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    summary = json.loads((Path(sorted((workspace["root"] / "runs").iterdir())[-1]) / "summary.json").read_text())
    assert summary["candidate"]["candidate_id"] == "one-split" and summary["champion"]["version"] == 2
    champion, challenger = summary["champion"]["metrics"], summary["candidate"]["test_metrics"]
    assert champion == pytest.approx(second_run["candidate"]["test_metrics"])  # v2 rescored on the same rows
    for metric in ("roc_auc", "pr_auc"):
        assert challenger[metric] < champion[metric] - CLEARLY, metric
    # Blocked by exactly the two change rules, with the numbers; the absolute thresholds were met.
    expected = [f"{metric} {challenger[metric]:.4f} is {champion[metric] - challenger[metric]:.4f} worse than "
                f"champion v2 ({champion[metric]:.4f}); tolerance {tolerance:g}"
                for metric, tolerance in (("pr_auc", 0.01), ("roc_auc", 0.005))]
    assert summary["gate"]["passed"] is False
    assert summary["gate"]["reasons"] == expected
    assert "Gate BLOCKED" in blocked.stdout and all(reason in blocked.stdout for reason in expected)
    assert "Nothing registered; aliases unchanged." in blocked.stdout
    assert "executor_input" not in blocked.stdout
    assert (registry / "aliases.json").read_text() == aliases_before
    assert sorted(p.name for p in registry.iterdir() if p.is_dir()) == versions_before
    assert {step["step"] for step in summary["steps"]}.isdisjoint({"infra-validate", "register", "deploy"})


def test_bad_input_fails_fast_with_the_reason(workspace):
    result = tollgate("run", "--config", workspace["config"], "--target", "no_such_column", check=False)
    assert result.returncode == 1
    assert "target column 'no_such_column' is not in the data" in result.stdout
    assert "Run failed in ingest" in result.stdout
    # The failed run's HTML report carries the error, not an empty page.
    report = Path(result.stdout.split("Report ")[1].split()[0]).read_text()
    assert "Run failed:" in report and "target column &#39;no_such_column&#39; is not in the data" in report
    bad = tollgate("run", "--config", workspace["config"], "--model-name", "Bad Name", check=False)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "error: invalid configuration (command-line options):",
        "  - model_name: String should match pattern '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' "
        "(set on the command line: model_name='Bad Name')"]


def test_models_commands_list_show_promote_rollback(workspace, second_run):
    common = ["--config", workspace["config"], "--json"]
    listing = json.loads(tollgate("models", "list", *common).stdout)
    assert [v["version"] for v in listing["versions"]] == [1, 2]  # run 3 was blocked
    assert listing["aliases"]["production"]["version"] == 2

    shown = json.loads(tollgate("models", "show", "production", *common).stdout)
    assert shown["version"] == 2 and "production" in shown["aliases"]
    assert shown["metadata"]["test_metrics"] == second_run["candidate"]["test_metrics"]

    promoted = json.loads(tollgate("models", "promote", "v1", *common).stdout)
    assert promoted["aliases"]["production"]["version"] == 1
    assert promoted["aliases"]["previous"]["version"] == 2
    rolled = json.loads(tollgate("models", "rollback", *common).stdout)
    assert rolled["aliases"]["production"]["version"] == 2
    assert rolled["aliases"]["previous"]["version"] == 1  # the champion v2 had replaced

    missing = tollgate("models", "promote", "v999", "--config", workspace["config"], check=False)
    assert missing.returncode == 1 and "v999 does not exist" in missing.stderr
    table = tollgate("models", "list", "--config", workspace["config"]).stdout
    assert "v1" in table and "production" in table
