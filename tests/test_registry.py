"""The registry on both backends: local directory and S3 (an S3-compatible test server, moto)."""

import json
import re
from pathlib import Path

import pytest

from tollgate.errors import ChampionChangedError, RegistryCorruptError, RegistryError, RegistryIntegrityError
from tollgate.registry import open_registry, verify_directory

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
    (source / "model.onnx").write_text(payload)  # required since the ONNX contract
    (source / "model.joblib").write_text(payload)
    (source / "input_schema.json").write_text(json.dumps({"columns": [{"name": "x", "dtype": "float64"}]}))
    return source


def test_versions_are_numbered_immutable_and_carry_metadata(registry, tmp_path):
    first = registry.register(MODEL, version_dir(tmp_path, "a", "model-a"), {"test_metrics": {"roc_auc": 0.71}})
    second = registry.register(MODEL, version_dir(tmp_path, "b", "model-b"), {"test_metrics": {"roc_auc": 0.74}})
    assert (first.version, second.version) == (1, 2)
    assert registry.version_numbers(MODEL) == [1, 2]
    assert second.metadata["test_metrics"]["roc_auc"] == 0.74
    assert second.metadata["model_name"] == MODEL and second.metadata["created_at"]
    assert second.uri.endswith(f"{MODEL}/v2")
    fetched = registry.download(MODEL, 1, tmp_path / "fetched")
    assert (fetched / "model.onnx").read_text() == "model-a"
    assert json.loads((fetched / "metadata.json").read_text())["version"] == 1
    assert registry.models() == [MODEL]


def test_register_refuses_an_incomplete_directory(registry, tmp_path):
    source = tmp_path / "partial"
    source.mkdir()
    (source / "model.onnx").write_text("x")
    with pytest.raises(RegistryError, match="missing input_schema.json"):
        registry.register(MODEL, source, {})
    assert registry.version_numbers(MODEL) == []


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
    # A model this registry does not hold at all: say which ones it does (a missing --model-name).
    with pytest.raises(RegistryError, match=rf"has no model 'churn'; it holds '{MODEL}': "
                                            rf"pass --model-name {MODEL}"):
        registry.resolve("churn", "production")
    with pytest.raises(RegistryError, match="no 'production' alias yet"):
        registry.resolve(MODEL, "production")
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
    assert registry.version_numbers(MODEL) == [1]
    assert registry.register(MODEL, version_dir(tmp_path, "b", "b"), {}).version == 2


def test_s3_version_without_completion_marker_is_invisible_and_never_reused(s3_bucket, tmp_path):
    from tollgate.s3 import client_from_env

    registry = open_registry(f"s3://{s3_bucket}")
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {})
    # Simulate an upload that died before its marker: files of v2 exist, _COMPLETE does not.
    client = client_from_env()
    client.fput_object(s3_bucket, f"{MODEL}/v2/model.onnx", str(version_dir(tmp_path, "b", "b") / "model.onnx"))
    assert registry.version_numbers(MODEL) == [1]
    with pytest.raises(RegistryError, match="v2 does not exist"):
        registry.promote(MODEL, 2)
    assert registry.register(MODEL, version_dir(tmp_path, "c", "c"), {}).version == 3


def test_s3_problems_are_explained(s3_server, monkeypatch):
    with pytest.raises(RegistryError, match="bucket 'no-such-bucket' does not exist"):
        open_registry("s3://no-such-bucket/models").version_numbers(MODEL)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(Exception, match="AWS_SECRET_ACCESS_KEY"):
        open_registry("s3://models")


# -- integrity ------------------------------------------------------------------------------

def _overwrite(registry, key: str, data: bytes) -> None:
    """Replace one stored file behind the registry's back (what an attacker or a bad disk does)."""
    store = registry.store
    if hasattr(store, "bucket"):
        import io

        store.client.put_object(store.bucket, store._key(key), io.BytesIO(data), len(data))
    else:
        (store.root / key).write_bytes(data)


def test_every_file_gets_a_sha256_in_the_manifest_and_download_checks_it(registry, tmp_path):
    source = version_dir(tmp_path, "a", "model-a")
    (source / "model.onnx").write_bytes(b"\x08\x01future-file")  # any file, not just the known ones
    version = registry.register(MODEL, source, {}).version
    manifest = registry.manifest(MODEL, version)
    paths = {f["path"] for f in manifest["files"]}
    assert paths == {"model.joblib", "input_schema.json", "metadata.json", "model.onnx"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"])
    assert registry.verify(MODEL, version).status == "ok"

    _overwrite(registry, f"{MODEL}/v{version}/model.onnx", b"\x08\x01future-fil3")
    with pytest.raises(RegistryIntegrityError, match=r"model.onnx does not match its manifest: sha256 [0-9a-f]{64} "
                                                     r"\(13 bytes\), recorded [0-9a-f]{64} \(13 bytes\)"):
        registry.download(MODEL, version, tmp_path / "out")
    assert not (tmp_path / "out" / "model.onnx").exists() and not (tmp_path / "out" / "model.joblib").exists()
    result = registry.verify(MODEL, version)
    assert result.status == "failed" and "model.onnx" in result.detail


def test_tampered_metadata_is_refused_before_it_is_parsed(registry, tmp_path):
    version = registry.register(MODEL, version_dir(tmp_path, "a", "a"), {"test_metrics": {"roc_auc": 0.7}}).version
    _overwrite(registry, f"{MODEL}/v{version}/metadata.json", b'{"test_metrics": {"roc_auc": 0.99}}')
    with pytest.raises(RegistryIntegrityError, match="metadata.json does not match its manifest"):
        registry.get_version(MODEL, version)
    versions, problems = registry.scan_versions(MODEL)
    assert versions == [] and len(problems) == 1 and problems[0].startswith("v1: ")


def test_a_version_whose_metadata_a_newer_tollgate_wrote_is_listed_as_unreadable(registry, tmp_path):
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {"test_metrics": {"roc_auc": 0.7}})
    registry.register(MODEL, version_dir(tmp_path, "b", "b"), {"record": "version_metadata", "record_version": 99})
    versions, problems = registry.scan_versions(MODEL)
    assert [v.version for v in versions] == [1]
    assert len(problems) == 1 and problems[0].startswith("v2: ") and "written by a newer Tollgate" in problems[0]


def test_versions_without_digests_read_as_unverified(tmp_path):
    registry = open_registry(str(tmp_path / "registry"))
    version = registry.register(MODEL, version_dir(tmp_path, "a", "a"), {}).version
    (tmp_path / "registry" / MODEL / f"v{version}" / "_COMPLETE").unlink()  # as registered before digests
    assert registry.get_version(MODEL, version).version == version
    assert (registry.download(MODEL, version, tmp_path / "out") / "model.joblib").read_text() == "a"
    result = registry.verify(MODEL, version)
    assert (result.status, result.detail.split(":")[0]) == ("unverified", "unverified (no digests)")
    assert verify_directory(tmp_path / "registry" / MODEL / f"v{version}") == "unverified (no digests)"


def test_s3_versions_from_before_digests_read_as_unverified(s3_bucket, tmp_path):
    from tollgate.s3 import client_from_env

    client = client_from_env()
    source = version_dir(tmp_path, "a", "a")
    # The layout the S3 backend wrote before digests: files, metadata, then a size-only marker.
    for name in ("model.joblib", "input_schema.json"):
        client.fput_object(s3_bucket, f"{MODEL}/v1/{name}", str(source / name))
    (tmp_path / "meta.json").write_text(json.dumps({"version": 1}))
    client.fput_object(s3_bucket, f"{MODEL}/v1/metadata.json", str(tmp_path / "meta.json"))
    sizes = [{"path": name, "bytes": (source / name).stat().st_size} for name in ("model.joblib", "input_schema.json")]
    (tmp_path / "marker.json").write_text(json.dumps({"files": sizes}))
    client.fput_object(s3_bucket, f"{MODEL}/v1/_COMPLETE", str(tmp_path / "marker.json"))
    registry = open_registry(f"s3://{s3_bucket}")
    fetched = registry.download(MODEL, 1, tmp_path / "out")
    assert json.loads((fetched / "metadata.json").read_text()) == {"version": 1}
    assert registry.verify(MODEL, 1).status == "unverified"


@pytest.mark.parametrize("metadata, missing", [
    ({"gate": {"passed": True}}, "'reasons'"),
    ({"prediction_profile": {"edges": [0.0, 1.0]}}, "'shares'"),
    ({"task": "multiclass", "per_class_test_metrics": [{"class": "a", "precision": 1.0}]}, "'recall'"),
    ({"features": ["age"]}, ""),
])
def test_a_nested_value_of_the_wrong_shape_gives_one_line_never_a_traceback(tmp_path, monkeypatch, metadata,
                                                                            missing):
    # The digest matches (the version was registered so), so only the record's reader can refuse it.
    from typer.testing import CliRunner

    from tollgate.cli import app
    from tollgate.cli.common import console, err_console

    for printer in (console, err_console):
        monkeypatch.setattr(printer, "width", 400)
    registry = open_registry(str(tmp_path / "registry"))
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), metadata)
    scanned, problems = registry.scan_versions(MODEL)
    assert scanned == [] and len(problems) == 1
    assert re.fullmatch(rf"v1: version_metadata record is malformed: .*{missing}.*", problems[0]), problems
    common = ["--registry", registry.uri, "--model-name", MODEL]
    for command in (["models", "list", *common], ["models", "show", "v1", *common]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "version_metadata record is malformed" in errors[0], (command, result.output)
        assert "Traceback" not in result.output


def test_corrupt_files_give_one_line_errors_naming_the_file(registry, tmp_path):
    version = registry.register(MODEL, version_dir(tmp_path, "a", "a"), {}).version
    registry.promote(MODEL, version)
    _overwrite(registry, f"{MODEL}/aliases.json", b'{"production": {"vers')
    with pytest.raises(RegistryCorruptError, match=r"aliases.json is not valid JSON .*`tollgate models promote vN` "
                                                   r"rewrites it"):
        registry.aliases(MODEL)
    registry.promote(MODEL, version)  # a manual promote repairs it
    assert registry.alias_version(MODEL, "production") == version
    _overwrite(registry, f"{MODEL}/aliases.json", b'{"production": "v1"}')
    with pytest.raises(RegistryCorruptError, match="invalid entry 'production'"):
        registry.champion(MODEL)
    registry.promote(MODEL, version)
    _overwrite(registry, f"{MODEL}/v{version}/_COMPLETE", b"[]")
    with pytest.raises(RegistryCorruptError, match="_COMPLETE is not a version manifest"):
        registry.download(MODEL, version, tmp_path / "out")
    with pytest.raises(RegistryError, match=r"production model credit-default v1 is unreadable: .* Ways forward: "
                                            r"`tollgate models rollback`.*`tollgate models promote vN`"):
        registry.champion(MODEL)


# -- compare-and-swap -------------------------------------------------------------------------

def test_promotion_is_conditional_on_the_champion_that_was_scored(registry, tmp_path):
    for name in "abc":
        registry.register(MODEL, version_dir(tmp_path, name, name), {})
    registry.promote(MODEL, 1, expect_production=None)
    with pytest.raises(ChampionChangedError, match="champion changed during the run: none → v1; not promoted — "
                                                   "rerun to compare against v1"):
        registry.promote(MODEL, 2, expect_production=None)
    registry.promote(MODEL, 2, expect_production=1)
    with pytest.raises(ChampionChangedError, match="v1 → v2"):
        registry.promote(MODEL, 3, expect_production=1)
    assert (registry.alias_version(MODEL, "production"), registry.alias_version(MODEL, "previous")) == (2, 1)


def test_alias_writes_are_compare_and_swap(registry, tmp_path):
    key = f"{MODEL}/aliases.json"
    data, token = registry.store.read_with_token(key)
    assert (data, token) == (None, None)
    assert registry.store.write_if(key, b'{"a": 1}', None)
    assert not registry.store.write_if(key, b'{"a": 2}', None)  # exists now
    data, token = registry.store.read_with_token(key)
    assert registry.store.write_if(key, b'{"a": 3}', token)
    assert not registry.store.write_if(key, b'{"a": 4}', token)  # stale token
    assert registry.store.read_bytes(key) == b'{"a": 3}'


def test_rollback_refuses_when_production_moves_underneath(registry, tmp_path):
    for name in "abc":
        registry.register(MODEL, version_dir(tmp_path, name, name), {})
    registry.promote(MODEL, 1)
    registry.promote(MODEL, 2)
    real_write = registry.store.write_if
    calls = []

    def interfering_write(key, data, token):
        if not calls:  # another writer promotes v3 between our read and our write
            calls.append(1)
            registry.store.write_if = real_write
            registry.promote(MODEL, 3)
        return real_write(key, data, token)

    registry.store.write_if = interfering_write
    with pytest.raises(ChampionChangedError, match="production moved from v2 to v3 while rolling back; nothing changed"):
        registry.rollback(MODEL)
    assert registry.alias_version(MODEL, "production") == 3


def test_restore_only_if_unchanged(registry, tmp_path):
    for name in "ab":
        registry.register(MODEL, version_dir(tmp_path, name, name), {})
    snapshot = registry.aliases(MODEL)
    ours = registry.promote(MODEL, 1)
    registry.promote(MODEL, 2)  # someone else, after our deploy set v1
    assert registry.restore_aliases(MODEL, snapshot, only_if=ours) is False
    assert registry.alias_version(MODEL, "production") == 2


def test_conditional_put_through_the_minio_sdk_private_call(s3_bucket):
    """tollgate.s3.put_conditional relies on minio 7.2.20's ``Minio._put_object(bucket, key, data, headers=)``
    sending headers as given (public put_object would turn them into x-amz-meta-*)."""
    from tollgate.s3 import client_from_env, put_conditional

    client = client_from_env()
    etag = put_conditional(client, s3_bucket, "k", b"one", if_none_match=True)
    assert etag and put_conditional(client, s3_bucket, "k", b"two", if_none_match=True) is None
    assert put_conditional(client, s3_bucket, "k", b"two", if_match="0" * 32) is None
    assert put_conditional(client, s3_bucket, "k", b"two", if_match=etag)
    assert client.get_object(s3_bucket, "k").read() == b"two"
    assert "x-amz-meta-if-none-match" not in {k.lower() for k in client.stat_object(s3_bucket, "k").metadata}


def test_s3_version_numbers_are_claimed_and_never_reused(s3_bucket, tmp_path):
    from tollgate.s3 import client_from_env

    registry = open_registry(f"s3://{s3_bucket}")
    # Another writer claimed v1 and died before uploading anything.
    client_from_env().put_object(s3_bucket, f"{MODEL}/v1/_CLAIM", __import__("io").BytesIO(b"{}"), 2)
    assert registry.register(MODEL, version_dir(tmp_path, "a", "a"), {}).version == 2
    assert registry.store.version_numbers(MODEL) == [2]


# -- garbage collection ---------------------------------------------------------------------

def test_gc_removes_old_litter_and_never_a_complete_version(tmp_path):
    import os
    import time

    registry = open_registry(str(tmp_path / "registry"))
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {})
    registry.promote(MODEL, 1)
    model_dir = tmp_path / "registry" / MODEL
    old, fresh = model_dir / ".staging-old", model_dir / ".staging-fresh"
    for path in (old, fresh):
        path.mkdir()
        (path / "model.joblib").write_text("half")
    stamp = time.time() - 7200
    os.utime(old / "model.joblib", (stamp, stamp))
    os.utime(old, (stamp, stamp))
    dry = registry.gc(older_than_seconds=3600, dry_run=True)
    assert dry.removed == [f"{MODEL}/.staging-old"] and old.exists()
    report = registry.gc(older_than_seconds=3600)
    assert report.removed == [f"{MODEL}/.staging-old"] and report.kept_recent == [f"{MODEL}/.staging-fresh"]
    assert not old.exists() and fresh.exists() and registry.verify(MODEL, 1).status == "ok"


def test_s3_gc_removes_incomplete_versions_but_keeps_their_claim(s3_bucket, tmp_path):
    from tollgate.s3 import client_from_env

    registry = open_registry(f"s3://{s3_bucket}/p")
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {})
    client = client_from_env()
    client.fput_object(s3_bucket, f"p/{MODEL}/v2/model.joblib", str(version_dir(tmp_path, "b", "b") / "model.joblib"))
    assert registry.gc(older_than_seconds=3600).kept_recent == [f"{MODEL}/v2"]
    assert registry.gc(older_than_seconds=0).removed == [f"{MODEL}/v2"]
    names = [o.object_name for o in client.list_objects(s3_bucket, prefix=f"p/{MODEL}/v2/", recursive=True)]
    assert names == [f"p/{MODEL}/v2/_CLAIM"]
    assert registry.store.litter(MODEL) == [] and registry.verify(MODEL, 1).status == "ok"
    assert registry.register(MODEL, version_dir(tmp_path, "c", "c"), {}).version == 3


def test_models_gc_and_verify_on_the_command_line(tmp_path):
    import os
    import time

    from typer.testing import CliRunner

    from tollgate.cli import app

    root = tmp_path / "registry"
    registry = open_registry(str(root))
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {})
    (root / MODEL / "v1" / "_COMPLETE").rename(tmp_path / "manifest")  # v1 as before digests
    registry.register(MODEL, version_dir(tmp_path, "b", "b"), {})
    leftover = root / MODEL / ".staging-crashed"
    leftover.mkdir()
    stamp = time.time() - 600
    os.utime(leftover, (stamp, stamp))
    runner = CliRunner()
    common = ["--registry", str(root), "--model-name", MODEL]
    result = runner.invoke(app, ["models", "verify", "--all", *common])
    assert result.exit_code == 0, result.output
    assert "v1: unverified unverified (no digests)" in result.stdout and "v2: ok" in result.stdout
    result = runner.invoke(app, ["models", "gc", "--older-than", "5m", "--dry-run", "--registry", str(root)])
    assert result.exit_code == 0 and f"would remove {MODEL}/.staging-crashed" in result.stdout and leftover.exists()
    result = runner.invoke(app, ["models", "gc", "--older-than", "5m", "--registry", str(root)])
    assert result.exit_code == 0 and not leftover.exists()
    result = runner.invoke(app, ["models", "gc", "--older-than", "soon", "--registry", str(root)])
    assert result.exit_code == 1 and "use a number with s, m, h or d" in result.stderr


def test_deploy_promotes_only_over_the_scored_champion(s3_bucket, tmp_path):
    from tollgate.steps.deploy import deploy, deploy_kserve, scored_champion

    registry = open_registry(f"s3://{s3_bucket}")
    registry.register(MODEL, version_dir(tmp_path, "a", "a"), {"replaced_champion": None})
    registry.register(MODEL, version_dir(tmp_path, "b", "b"), {"replaced_champion": None})
    registry.register(MODEL, version_dir(tmp_path, "c", "c"), {"replaced_champion": 1})
    assert scored_champion(registry, MODEL, 2) is None and scored_champion(registry, MODEL, 3) == 1
    assert deploy("local", registry, MODEL, 1, expect_production=None).promoted
    # v2 was scored against "no champion", but v1 got there first: not promoted, aliases untouched.
    result = deploy("local", registry, MODEL, 2, expect_production=None)
    assert not result.promoted and result.detail.startswith("champion changed during the run: none → v1")
    # The KServe target gives up before touching the cluster (this api object has no methods).
    result = deploy_kserve(registry, MODEL, 2, api=object(), expect_production=None)
    assert not result.promoted and registry.alias_version(MODEL, "production") == 1
    assert deploy("local", registry, MODEL, 3, expect_production=1).promoted
    assert (registry.alias_version(MODEL, "production"), registry.alias_version(MODEL, "previous")) == (3, 1)


def test_models_list_shows_each_versions_own_listed_metrics_not_nan(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tollgate.cli import app
    from tollgate.cli.common import console

    monkeypatch.setattr(console, "width", 200)  # the CLI's console measured the terminal at import

    def listing():
        result = CliRunner().invoke(app, ["models", "list", "--registry", registry.uri, "--model-name", MODEL])
        assert result.exit_code == 0, result.output
        lines = [[cell.strip() for cell in re.split("[┃│]", line)] for line in result.output.splitlines()]
        return next(line for line in lines if line[0] == "version"), {line[0]: line for line in lines
                                                                      if re.fullmatch(r"v\d+", line[0])}

    registry = open_registry(str(tmp_path / "registry"))
    registry.register(MODEL, version_dir(tmp_path, "binary", "b"), {"test_metrics": {"roc_auc": 0.81, "pr_auc": 0.5}})
    assert listing()[0] == ["version", "aliases", "created", "candidate", "roc_auc", "pr_auc", "rows"]
    registry.register(MODEL, version_dir(tmp_path, "multi", "m"),
                      {"task": "multiclass", "test_metrics": {"roc_auc": float("nan"), "roc_auc_ovr_macro": 0.883,
                                                              "f1_macro": 0.685, "pr_auc": float("nan")}})
    header, rows = listing()
    # A multiclass version (task recorded) shows its macro one-vs-rest AUC and macro F1, not NaN.
    assert header == ["version", "aliases", "created", "candidate", "roc_auc / roc_auc_ovr_macro",
                      "pr_auc / f1_macro", "rows"]
    assert rows["v1"][4:6] == ["0.8100", "0.5000"] and rows["v2"][4:6] == ["0.8830", "0.6850"]


def test_a_version_uri_splits_back_into_the_registry_model_and_version(tmp_path, s3_bucket):
    from tollgate.registry.base import split_version_uri

    for registry in (open_registry(str(tmp_path / "reg")), open_registry(f"s3://{s3_bucket}/models/prod")):
        uri = registry.store.version_uri("credit-default", 12)
        assert split_version_uri(uri) == (registry.uri, "credit-default", 12)
        assert split_version_uri(uri + "/") == (registry.uri, "credit-default", 12)
    assert split_version_uri("s3://bucket/credit-default/latest") is None
    assert split_version_uri("v3") is None


def test_register_keeps_the_model_files_and_lets_the_registry_refuse_what_is_missing(trained_model_dir, tmp_path):
    import shutil

    from tests.conftest import evaluation_record
    from tollgate.errors import RegistryError
    from tollgate.records import DataLineage, DataSchema, Decision, FeatureSpec
    from tollgate.steps.register import run_register

    spec = FeatureSpec(target="defaulted", positive_label=1, negative_label=0, numeric=["age"], categorical=[],
                       schema=json.loads((trained_model_dir / "input_schema.json").read_text()))
    args = dict(spec=spec, evaluation=evaluation_record({"metrics": {"roc_auc": 0.8}, "rows": 10}),
                decision=Decision(passed=True, reasons=[]), data=DataLineage(source="builtin", rows=50),
                data_schema=DataSchema(rows=50, target="defaulted", positive_label=1, label_shares={"0": 0.8, "1": 0.2},
                                       label_missing=0, duplicate_share=0.0, columns=[]), run_id="run-1")
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    shutil.copy2(trained_model_dir / "model.onnx", candidate / "model.onnx")
    (candidate / "candidate.json").write_text("{}")  # a run's working file: stays with the run
    registry = open_registry(str(tmp_path / "registry"))
    version = run_register(registry, MODEL, candidate, **args)  # no model.joblib: still a servable version
    files = {p.name for p in (tmp_path / "registry" / MODEL / f"v{version.version}").iterdir()}
    assert files == {"model.onnx", "input_schema.json", "data_schema.json", "metadata.json", "_COMPLETE"}
    (candidate / "model.onnx").unlink()
    with pytest.raises(RegistryError, match="missing model.onnx"):
        run_register(registry, MODEL, candidate, **args)
