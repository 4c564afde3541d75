"""Register component: publish the gated model as a new registry version."""

from kfp.dsl import Artifact, Dataset, Input, Model


def register(best: Input[Model], features: Input[Artifact], evaluation: Input[Artifact],
             decision: Input[Artifact], raw: Input[Dataset], data_schema: Input[Artifact], registry_uri: str,
             model_name: str, run_id: str) -> int:
    """Push model, input and data schemas and metadata to the registry; returns the new version number."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from tollgate.registry import open_registry
    from tollgate.steps.register import build_metadata, register_model
    from tollgate.steps.register import hold_for_tests as _hold_for_tests

    with open(features.path) as handle:
        spec = json.load(handle)
    with open(evaluation.path) as handle:
        record = json.load(handle)
    with open(decision.path) as handle:
        verdict = json.load(handle)
    with open(data_schema.path) as handle:
        training_data_schema = json.load(handle)
    champion = record.get("champion")
    data = {key: raw.metadata.get(key) for key in ("source", "rows", "fingerprint", "window")}
    data["split_rows"] = {"test": record["candidate"]["rows"]}
    candidate = dict(best.metadata)
    candidate["params"] = json.loads(candidate.pop("params_json"))
    metadata = build_metadata(
        candidate=candidate, test_metrics=record["candidate"]["metrics"], data=data,
        decision=verdict, run_id=run_id, champion_version=champion["version"] if champion else None,
        extra={"champion_test_metrics": champion.get("metrics") if champion else None,
               "prediction_profile": record["candidate"].get("prediction_profile"),
               "features": {"numeric": spec["numeric"], "categorical": spec["categorical"],
                            "target": spec["target"], "positive_label": spec["positive_label"],
                            "negative_label": spec["negative_label"]}},
    )
    if spec.get("task") == "multiclass":
        # The class order (the probability columns' order) is fixed at training and recorded with the version.
        metadata["features"].update(task="multiclass", classes=spec["classes"])
        metadata["task"] = "multiclass"
        metadata["per_class_test_metrics"] = record["candidate"].get("per_class")
    _hold_for_tests()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model"
        shutil.copytree(best.path, staged)
        version = register_model(open_registry(registry_uri), model_name, staged, spec["schema"], metadata,
                                 data_schema=training_data_schema)
    return version.version
