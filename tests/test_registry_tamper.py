"""Tampered and corrupt registry files: refused before anything is unpickled or parsed, with
one clear line (never a traceback) on every command, and never a marker from a malicious pickle."""

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import free_port, make_config, run_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from registry_chaos import DAMAGE, FILES, MarkerPickle, corruption_row, write_run_config  # noqa: E402
from registry_chaos import cli as _cli  # noqa: E402

MODEL = "credit-default"
ONE_CANDIDATE = [{"name": "logreg", "family": "logistic_regression", "params": {"max_iter": 300}, "grid": {}}]


@pytest.fixture
def registry_copy(trained_model_dir, tmp_path):
    """A private copy of the session's real registry (production v1), safe to damage."""
    root = tmp_path / "registry"
    shutil.copytree(trained_model_dir.parent.parent, root)
    return root


@pytest.fixture
def tampered(registry_copy, tmp_path):
    """model.joblib of production v1 replaced by a pickle that creates ``marker`` when loaded."""
    marker = tmp_path / "pwned"
    (registry_copy / MODEL / "v1" / "model.joblib").write_bytes(pickle.dumps(MarkerPickle(str(marker))))
    return registry_copy, marker


def test_an_untouched_real_version_verifies_and_loads_from_its_verified_copy(registry_copy, tmp_path):
    import joblib

    from tollgate.serving.source import fetch_registered

    code, output = _cli("models", "verify", "--registry", str(registry_copy), "--model-name", MODEL)
    assert code == 0 and "v1: ok" in output
    directory, number = fetch_registered(str(registry_copy), MODEL, "production", tmp_path / "copy")
    assert number == 1 and directory == tmp_path / "copy"
    assert hasattr(joblib.load(directory / "model.joblib"), "predict_proba")


def test_models_verify_refuses_the_tampered_version_and_names_both_digests(tampered):
    registry, marker = tampered
    code, output = _cli("models", "verify", "--all", "--registry", str(registry), "--model-name", MODEL)
    assert code == 1 and "v1: failed" in output
    assert "model.joblib does not match its manifest: sha256" in output and "recorded" in output
    assert not marker.exists()


def test_tollgate_serve_refuses_it(tampered):
    registry, marker = tampered
    process = subprocess.run(
        [sys.executable, "-m", "tollgate.cli", "serve", "--registry", str(registry), "--model-name", MODEL,
         "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert "does not match its manifest" in " ".join(lines) and "Traceback" not in process.stderr
    assert not marker.exists()


def test_the_model_server_entry_point_refuses_a_tampered_directory(tampered):
    registry, marker = tampered
    process = subprocess.run(
        [sys.executable, "-m", "tollgate.serving", "--model-dir", str(registry / MODEL / "v1"),
         "--http-port", str(free_port()), "--grpc-port", str(free_port()), "--host", "127.0.0.1"],
        capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    assert process.stderr.startswith("error: ") and "does not match its manifest" in process.stderr
    assert not marker.exists()


def test_infra_validation_refuses_it(tampered):
    from tollgate.steps.infra_validate import infra_validate

    registry, marker = tampered
    # Refused before staging: the test rows and feature spec are never reached.
    report = infra_validate(str(registry / MODEL / "v1"), pd.DataFrame(), spec=None)
    assert report.passed is False and "does not match its manifest" in report.reason
    assert not marker.exists()


def test_a_new_run_stops_at_evaluate_and_names_the_ways_forward(tampered, tmp_path):
    registry, marker = tampered
    config = make_config(tmp_path, **{"registry.uri": str(registry), "train.candidates": ONE_CANDIDATE})
    outcome, summary = run_pipeline(config)
    assert not outcome.succeeded and outcome.failed_task == "evaluate"
    assert "production model credit-default v1 is unreadable" in outcome.error
    assert "model.joblib does not match its manifest" in outcome.error
    assert "`tollgate models rollback`" in outcome.error and "`tollgate models promote vN`" in outcome.error
    assert not marker.exists()
    # The CLI says the same before training anything.
    code, output = _cli("run", "--registry", str(registry), "--config", str(write_run_config(tmp_path)))
    assert code == 1 and "is unreadable" in output and "Traceback" not in output
    assert not marker.exists()


# -- the corruption table -------------------------------------------------------------------

@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", FILES)
def test_corruption_gives_one_clear_line_never_a_traceback(registry_copy, name, how, tmp_path):
    row = corruption_row(registry_copy, MODEL, name, how, tmp_path)
    for command, (code, output) in row.items():
        assert "Traceback" not in output, (command, output)
        if command == "models list" and name not in ("metadata.json", "_COMPLETE", "aliases.json"):
            assert code == 0, (command, output)  # list reads only metadata (and aliases) of each version
            continue
        assert code == 1, (command, output)
        error = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(error) == 1, (command, output)
        assert name in error[0], (command, error[0])
        if command == "run" and name != "aliases.json":
            assert "Ways forward" in error[0]
