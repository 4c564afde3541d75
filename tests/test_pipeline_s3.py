"""The DAG with data and registry on S3, against moto's S3-compatible test server (not MinIO).

Task subprocesses inherit the S3 environment from the runner, as pods get it from a Secret.
"""

import pytest

from tests.conftest import make_config, run_pipeline
from tollgate.data.builtin import generate_applicants
from tollgate.registry import open_registry

pytestmark = pytest.mark.pipeline


def test_dag_reads_s3_data_and_registers_into_s3(s3_bucket, tmp_path):
    from tollgate.s3 import client_from_env

    csv = tmp_path / "applicants.csv"
    generate_applicants(rows=1500, seed=5).to_csv(csv, index=False)
    client_from_env().fput_object(s3_bucket, "data/2026-11-20/applicants.csv", str(csv))
    config = make_config(tmp_path, **{"registry.uri": f"s3://{s3_bucket}/models",
                                      "data.source": f"s3://{s3_bucket}/data/2026-11-20/applicants.csv",
                                      # This test is about S3, not model quality: 300 test rows are noisy.
                                      "gate.absolute": {"roc_auc": {"min": 0.55}}})

    outcome, summary = run_pipeline(config)

    assert outcome.succeeded, outcome.error
    assert summary["data"]["source"] == config.data.source and summary["data"]["rows"] == 1500
    assert summary["registered_version"] == 1
    registry = open_registry(config.registry.uri)
    version = registry.resolve(config.model_name, "production")
    assert version.uri == f"s3://{s3_bucket}/models/{config.model_name}/v1"
    assert version.metadata["data"]["source"] == config.data.source
    fetched = registry.download(config.model_name, 1, tmp_path / "fetched")
    assert (fetched / "model.joblib").stat().st_size > 0 and (fetched / "input_schema.json").is_file()
