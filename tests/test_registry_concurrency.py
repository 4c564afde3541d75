"""Real concurrent processes against both registry backends (a seeded, bounded sample of
bench/registry_chaos.py, which runs the full counts; docs/benchmarks.md has its figures).

Writers are separate processes released together by a barrier (Python API) or a start
file (two real ``tollgate models`` CLI processes); nothing about the race is mocked. The
test of the losing CLI rollback holds both processes right after their first read of the
aliases (``TOLLGATE_TEST_HOLD_ROLLBACK``), so they always race for the same write.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import registry_chaos as chaos  # noqa: E402

API_TRIALS = 10
CLI_TRIALS = 1
KILLS = 2


@pytest.fixture(params=["local", "s3"])
def registry_uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "registry")
    return f"s3://{request.getfixturevalue('s3_bucket')}/registry"


def test_concurrent_registrations_get_distinct_complete_versions(registry_uri, tmp_path):
    result = chaos.race_register(registry_uri, API_TRIALS, tmp_path)
    assert result == {"trials": API_TRIALS, "duplicates": 0, "mixed_files": 0, "failed_verification": 0,
                      "failed_registrations": 0}


@pytest.mark.parametrize("case", list(chaos.ALIAS_CASES))
def test_concurrent_alias_moves_lose_no_update(registry_uri, case, tmp_path):
    result = chaos.race_aliases(registry_uri, case, API_TRIALS, tmp_path)
    assert result["lost_updates"] == 0, result["examples"]
    if case == "rollback||rollback":
        # Both read the same production; the second must not walk back a step it never saw.
        assert result["refused_with_message"] >= 1


@pytest.mark.parametrize("case", list(chaos.ALIAS_CASES))
def test_two_cli_processes_lose_no_update(registry_uri, case, tmp_path):
    result = chaos.race_aliases(registry_uri, case, CLI_TRIALS, tmp_path, via_cli=True)
    assert result["lost_updates"] == 0, result["examples"]


def test_the_loser_of_two_cli_rollbacks_says_what_changed_and_exits_1(tmp_path):
    """Two real `tollgate models rollback` processes, each held right after its first read of the
    aliases (``TOLLGATE_TEST_HOLD_ROLLBACK``) until both have read production v3: released
    together, both write with the same token, so exactly one wins and the other must refuse."""
    from tollgate.registry import open_registry
    from tollgate.registry.base import ROLLBACK_HOLD_ENV

    uri = str(tmp_path / "registry")
    chaos.setup_alias_model(uri, "m", tmp_path)
    hold = tmp_path / "hold-rollback"
    hold.touch()
    env = {**os.environ, ROLLBACK_HOLD_ENV: str(hold)}
    processes = [subprocess.Popen([sys.executable, "-m", "tollgate.cli", "models", "rollback", "--registry", uri,
                                   "--model-name", "m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for _ in range(2)]
    try:
        reached = {p.pid: hold.with_name(f"{hold.name}.reached-{p.pid}") for p in processes}
        deadline = time.monotonic() + 120
        while not all(marker.exists() for marker in reached.values()):
            for process in processes:
                assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the two rollbacks never both read the aliases"
            time.sleep(0.05)
        # Both hold a read of production v3 and previous v2, and nothing has been written yet.
        assert open_registry(uri).aliases("m") == chaos.INITIAL_ALIASES
        hold.unlink()
        results = [(p.returncode, (out + err).strip()) for p in processes for out, err in [p.communicate(timeout=120)]]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(text for code, text in results if code == 1)
    assert "production moved from v3 to v2 while rolling back; nothing changed" in loser
    assert "Traceback" not in loser
    # Exactly one rollback happened: production v2, previous v1 (the champion v2 replaced).
    aliases = open_registry(uri).aliases("m")
    assert (aliases["production"]["version"], aliases["previous"]["version"]) == (2, 1)


@pytest.mark.parametrize("target", ["publish", "promote"])
def test_kill_9_loses_no_complete_version_and_gc_leaves_no_litter(registry_uri, target, tmp_path):
    result = chaos.chaos_kill(registry_uri, target, KILLS, tmp_path, seed=3)
    assert result["problems"] == []


def test_tampered_files_never_load(registry_uri, tmp_path):
    assert chaos.tamper_trials(registry_uri, 4, tmp_path) == {"trials": 4, "tampered_loads": 0, "missed_refusals": 0}


def test_the_harness_sees_lost_updates_when_alias_writes_are_blind(s3_bucket, tmp_path):
    """Control: without compare-and-swap (last writer wins) the same harness must count lost updates
    (on S3 the read-to-write window is a network round trip: 50 of 50 in the full bench run)."""
    with chaos.blind_alias_writes():
        result = chaos.race_aliases(f"s3://{s3_bucket}/registry", "rollback||rollback", 10, tmp_path)
    assert result["lost_updates"] >= 1
