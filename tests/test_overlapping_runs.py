"""Two real `tollgate run` processes against one registry, forced to overlap.

Run A is held just before register (``TOLLGATE_TEST_HOLD_REGISTER``) after it compared its
candidate with "no champion"; run B then runs to the end and promotes v1. When A resumes it
may register v2, but must not move ``production`` over v1, which it never compared against.
"""

import json
import os
import subprocess
import sys
import time

import yaml
from rich.console import Console

from tollgate.registry import open_registry
from tollgate.steps.register import HOLD_ENV
from tollgate.summary import RunSummary, render_summary

MODEL = "credit-default"
ONE_CANDIDATE = [{"name": "logreg", "family": "logistic_regression", "params": {"max_iter": 300}, "grid": {}}]


def _run(config, env_extra=None):
    env = {key: value for key, value in os.environ.items() if key != HOLD_ENV}
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "tollgate.cli", "run", "--config", str(config), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_run_does_not_promote_over_a_champion_it_did_not_compare_against(tmp_path):
    registry = tmp_path / "registry"
    config = tmp_path / "tollgate.yaml"
    config.write_text(yaml.safe_dump({"registry": {"uri": str(registry)}, "run": {"root": str(tmp_path / "runs")},
                                      "data": {"builtin": {"rows": 1500}}, "train": {"candidates": ONE_CANDIDATE}}))
    hold = tmp_path / "hold-register"
    hold.touch()
    run_a = _run(config, {HOLD_ENV: str(hold)})
    deadline = time.monotonic() + 240
    while not hold.with_name(hold.name + ".reached").exists():
        assert run_a.poll() is None, run_a.communicate()
        assert time.monotonic() < deadline, "run A never reached register"
        time.sleep(0.2)

    run_b = _run(config)
    out_b, err_b = run_b.communicate(timeout=300)
    assert run_b.returncode == 0, err_b[-2000:]
    summary_b = json.loads(out_b)
    assert summary_b["registered_version"] == 1 and summary_b["promoted"] is True

    hold.unlink()
    out_a, err_a = run_a.communicate(timeout=300)
    assert run_a.returncode == 0, err_a[-2000:]
    summary_a = json.loads(out_a)
    assert summary_a["champion"] is None  # A compared with "no champion"...
    assert summary_a["registered_version"] == 2  # ...may register...
    assert summary_a["promoted"] is False  # ...but does not promote over v1
    assert summary_a["deploy"]["detail"] == ("champion changed during the run: none → v1; not promoted — "
                                             "rerun to compare against v1")
    reg = open_registry(str(registry))
    assert reg.alias_version(MODEL, "production") == 1 and reg.alias_version(MODEL, "previous") is None
    assert "champion changed during the run" in open(summary_a["report"]).read()
    for summary in (summary_a, summary_b):  # the JSON reads back as the typed summary it was written from
        assert RunSummary.from_dict(summary).to_dict() == summary
    console = Console(record=True, width=300)
    render_summary(RunSummary.from_dict(summary_a), console)
    assert "Not promoted: champion changed during the run: none → v1" in console.export_text()
