"""The registry on both backends: local directory and S3 (an S3-compatible test server, moto)."""

import json
from pathlib import Path

import pytest

from tollgate.errors import RegistryError
from tollgate.registry import open_registry

MODEL = "credit-default"


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path):
    if request.param == "local":
        return open_registry(str(tmp_path / "registry"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_registry(f"s3://{bucket}/team-a")


def version_dir(tmp_path: Path, name: str, payload: str) -> Path:
    source = tmp_path / name
    source.mkdir()
    (source / "model.joblib").write_text(payload)
    (source / "input_schema.json").write_text(json.dumps({"columns": [{"name": "x", "dtype": "float64"}]}))
    return source


def test_versions_are_numbered_immutable_and_carry_metadata(registry, tmp_path):
    first = registry.register(MODEL, version_dir(tmp_path, "a", "model-a"), {"test_metrics": {"roc_auc": 0.71}})
    second = registry.register(MODEL, version_dir(tmp_path, "b", "model-b"), {"test_metrics": {"roc_auc": 0.74}})
    assert (first.version, second.version) == (1, 2)
    assert [v.version for v in registry.list_versions(MODEL)] == [1, 2]
    assert second.metadata["test_metrics"]["roc_auc"] == 0.74
    assert second.metadata["model_name"] == MODEL and second.metadata["created_at"]
    assert second.uri.endswith(f"{MODEL}/v2")
    fetched = registry.download(MODEL, 1, tmp_path / "fetched")
    assert (fetched / "model.joblib").read_text() == "model-a"
    assert json.loads((fetched / "metadata.json").read_text())["version"] == 1
    assert registry.models() == [MODEL]


def test_register_refuses_an_incomplete_directory(registry, tmp_path):
    source = tmp_path / "partial"
    source.mkdir()
    (source / "model.joblib").write_text("x")
    with pytest.raises(RegistryError, match="missing input_schema.json"):
        registry.register(MODEL, source, {})
    assert registry.list_versions(MODEL) == []


def test_promote_and_rollback_move_aliases_together(registry, tmp_path):
    for name in "abc":
        registry.register(MODEL, version_dir(tmp_path, name, name), {})
    # v2 replaced v1, v3 replaced v2: lineage as the pipeline records it.
    registry.promote(MODEL, 1)
    assert registry.aliases(MODEL).keys() == {"production"}
    registry.promote(MODEL, 2)
    registry.promote(MODEL, 3)
    assert (registry.alias_version(MODEL, "production"), registry.alias_version(MODEL, "previous")) == (3, 2)
    assert registry.resolve(MODEL, "production").version == 3
    assert registry.resolve(MODEL, "v2").version == 2 and registry.resolve(MODEL, "1").version == 1

    registry.rollback(MODEL)
    assert registry.alias_version(MODEL, "production") == 2
    # v2's metadata names no replaced champion here, so there is nothing further back.
    assert registry.alias_version(MODEL, "previous") is None
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(MODEL)


def test_rollback_walks_back_the_recorded_lineage(registry, tmp_path):
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {"replaced_champion": None})
    registry.register(MODEL, version_dir(tmp_path, "b", "b"), {"replaced_champion": 1})
    registry.register(MODEL, version_dir(tmp_path, "c", "c"), {"replaced_champion": 2})
    for version in (1, 2, 3):
        registry.promote(MODEL, version)
    registry.rollback(MODEL)
    assert (registry.alias_version(MODEL, "production"), registry.alias_version(MODEL, "previous")) == (2, 1)
    registry.rollback(MODEL)
    assert registry.alias_version(MODEL, "production") == 1


def test_errors_name_what_exists(registry, tmp_path):
    with pytest.raises(RegistryError, match="no 'production' alias yet"):
        registry.resolve(MODEL, "production")
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {})
    with pytest.raises(RegistryError, match=r"v7 does not exist .*\(versions: v1\)"):
        registry.promote(MODEL, 7)
    with pytest.raises(RegistryError, match="neither an alias"):
        registry.resolve(MODEL, "latest")
    with pytest.raises(RegistryError, match="unknown alias"):
        registry.alias_version(MODEL, "staging")
    assert registry.aliases(MODEL) == {}


def test_restore_aliases_puts_back_a_snapshot(registry, tmp_path):
    for name in "ab":
        registry.register(MODEL, version_dir(tmp_path, name, name), {})
    registry.promote(MODEL, 1)
    snapshot = registry.aliases(MODEL)
    registry.promote(MODEL, 2)
    registry.restore_aliases(MODEL, snapshot)
    assert registry.aliases(MODEL) == snapshot


def test_local_half_written_version_is_invisible(tmp_path):
    registry = open_registry(str(tmp_path / "registry"))
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {})
    # A crashed writer leaves only its hidden staging directory behind.
    staging = tmp_path / "registry" / MODEL / ".staging-crashed"
    staging.mkdir()
    (staging / "model.joblib").write_text("half")
    assert [v.version for v in registry.list_versions(MODEL)] == [1]
    assert registry.register(MODEL, version_dir(tmp_path, "b", "b"), {}).version == 2


def test_s3_version_without_completion_marker_is_invisible_and_never_reused(s3_bucket, tmp_path):
    from tollgate.s3 import client_from_env

    registry = open_registry(f"s3://{s3_bucket}")
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {})
    # Simulate an upload that died before its marker: files of v2 exist, _COMPLETE does not.
    client = client_from_env()
    client.fput_object(s3_bucket, f"{MODEL}/v2/model.joblib", str(version_dir(tmp_path, "b", "b") / "model.joblib"))
    assert [v.version for v in registry.list_versions(MODEL)] == [1]
    with pytest.raises(RegistryError, match="v2 does not exist"):
        registry.promote(MODEL, 2)
    assert registry.register(MODEL, version_dir(tmp_path, "c", "c"), {}).version == 3


def test_s3_problems_are_explained(s3_server, monkeypatch):
    with pytest.raises(RegistryError, match="bucket 'no-such-bucket' does not exist"):
        open_registry("s3://no-such-bucket/models").list_versions(MODEL)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(Exception, match="AWS_SECRET_ACCESS_KEY"):
        open_registry("s3://models")
