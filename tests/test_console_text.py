"""What the console prints equals what --json says: Rich must not eat `[lowercase ...]` text."""

from __future__ import annotations

import json

from rich.console import Console
from typer.testing import CliRunner

from tollgate.cli import app
from tollgate.cli.common import emit_json
from tollgate.summary import RunSummary, render_summary

HINT = "  [validation.severity.dtype_change: warning would allow it]"
CANDIDATE = "hgb[learning_rate=0.1-max_leaf_nodes=15]"


def bracketed_summary() -> dict:
    """A summary whose every dynamic string holds text Rich would read as markup."""
    return {
        "run_dir": "/runs/run-[a]", "log_file": "/runs/run-[a]/kfp.log", "succeeded": False,
        "total_seconds": 1.5, "model_name": "m", "registry": "/reg/[b]",
        "steps": [{"step": "validate", "tasks": 1, "seconds": 0.5, "status": "FAILURE"}],
        "data": {"source": "/data/[raw].csv", "rows": 32561, "fingerprint": "sha256:[f]", "window": None,
                 "notes": ["'[x]': read as numeric; 3 blank values are missing"]},
        "validation": {"passed": True, "reference_version": 1, "rows": 32561, "note": "[n]", "anomalies": [
            {"column": "col[i]", "check": "new_column", "observed": "present ([int64])",
             "allowed": "only [the reference's] columns", "blocking": False}],
            "drift": [{"column": "f[1]", "kind": "categorical", "measure": "l_infinity", "value": 0.4,
                       "threshold": 0.2, "labels": ["[a]", "[b]"], "reference": [0.5, 0.5], "current": [0.9, 0.1],
                       "drifted": True}]},
        "leaderboard": [{"candidate_id": CANDIDATE, "family": "hist_gradient_boosting",
                         "params": {"learning_rate": 0.1, "max_leaf_nodes": 15}, "validation_metrics": {"roc_auc": 0.8}}],
        "candidate": {"candidate_id": CANDIDATE, "family": "hist_gradient_boosting",
                      "validation_metrics": {"roc_auc": 0.8}, "selection_metric": "roc_auc",
                      "params": {"learning_rate": 0.1, "max_leaf_nodes": 15},
                      "test_metrics": {"roc_auc": 0.8}, "fairness": {"sex[bin]": {
                          "disparate_impact": 0.9, "equal_opportunity_difference": 0.05}}},
        "champion": {"version": 2, "error": "needs columns ['Unnamed: 0']"},
        "gate": {"passed": False, "reasons": ["roc_auc [0.7] below [min 0.8]"], "rules": [], "champion_version": 2},
        "error": "validation failed; nothing will be trained or registered:\n  x: dtype_change (observed a; "
                 "allowed b)" + HINT,
        "failed_step": "validate",
        "report": "/runs/run-[a]/report.html",
        "aliases": {"production": {"version": 2}},
    }


def rendered(summary: dict) -> str:
    console = Console(record=True, width=400, color_system=None)
    render_summary(RunSummary.from_dict(summary), console)
    return console.export_text()


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_every_dynamic_string_reaches_the_console_verbatim(capsys):
    summary = bracketed_summary()
    text = rendered(summary)
    expected = [
        HINT, CANDIDATE, "learning_rate=0.1, max_leaf_nodes=15", "/data/[raw].csv", "32,561 rows",
        "'[x]': read as numeric; 3 blank values are missing",
        "col[i]: new_column (observed present ([int64]); allowed only [the reference's] columns)",
        "(f[1])", "Fairness sex[bin]", "needs columns ['Unnamed: 0']", "roc_auc [0.7] below [min 0.8]",
        "/runs/run-[a]/report.html", "run directory /runs/run-[a]", "/runs/run-[a]/kfp.log",
    ]
    for fragment in expected:
        assert fragment in text, f"{fragment!r} was lost on the console:\n{text}"
    # and each one is the very text the JSON form carries: what `tollgate run --json` writes (emit_json) is
    # one JSON document that reads back as the summary itself, brackets and all.
    capsys.readouterr()
    emit_json(RunSummary.from_dict(summary).to_dict())
    out = capsys.readouterr().out
    assert json.loads(out) == summary
    strings = _strings(json.loads(out))
    for fragment in (HINT.strip(), CANDIDATE, "/data/[raw].csv", "col[i]", "f[1]", "sex[bin]", "/runs/run-[a]",
                     "roc_auc [0.7] below [min 0.8]", "needs columns ['Unnamed: 0']", "only [the reference's] columns"):
        assert any(fragment in s for s in strings), f"{fragment!r} was lost from the JSON:\n{out}"


def test_config_errors_keep_their_regex_and_blame_the_flag(tmp_path):
    result = CliRunner().invoke(app, ["run", "--model-name", "Bad[*]"], terminal_width=300)
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "invalid configuration (command-line options):" in output
    assert "model_name: String should match pattern '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'" in output
    assert "(set on the command line: model_name='Bad[*]')" in output
    assert "built-in defaults" not in output


def test_config_errors_from_a_file_blame_the_file(tmp_path):
    config = tmp_path / "my.yaml"
    config.write_text("data:\n  targt: y\n")
    result = CliRunner().invoke(app, ["run", "--config", str(config)], terminal_width=300)
    assert result.exit_code == 1
    assert f"invalid configuration ({config}):" in result.output
    assert "data.targt: Extra inputs are not permitted" in result.output


def test_a_run_that_stopped_before_its_pipeline_started_has_no_aliases_key(tmp_path):
    # As before the summary was typed: the registry is read only when the run got to its pipeline.
    from tollgate.local_run import RunOutcome
    from tollgate.registry import open_registry
    from tollgate.summary import build_summary

    outcome = RunOutcome(run_dir=tmp_path, pipeline_dir=None, log_file=tmp_path / "kfp.log", succeeded=False,
                         total_seconds=0.5, error="config [x] refused", failed_task=None)
    summary = build_summary(outcome, open_registry(str(tmp_path / "registry")), "m").to_dict()
    assert summary == {"run_dir": str(tmp_path), "log_file": str(tmp_path / "kfp.log"), "succeeded": False,
                       "total_seconds": 0.5, "steps": [], "model_name": "m", "registry": str(tmp_path / "registry"),
                       "error": "config [x] refused", "failed_step": None}
    assert "Run failed: config [x] refused" in rendered(summary)
