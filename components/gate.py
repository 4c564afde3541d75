"""Gate component: apply the promotion policy; its boolean output drives ``dsl.If``."""

from kfp.dsl import Artifact, Input, Output


def gate(policy_json: str, evaluation: Input[Artifact], decision: Output[Artifact]) -> bool:
    """Decide candidate vs champion. Returns a single bool: kfp.local resolves only
    ``<task>-Output`` references in conditions, not NamedTuple fields."""
    import json

    from tollgate.steps.gate import Champion, Policy, decide

    with open(evaluation.path) as handle:
        record = json.load(handle)
    champion_record = record.get("champion")
    champion = None
    if champion_record is not None:
        champion = Champion(version=champion_record["version"], metrics=champion_record.get("metrics"),
                            error=champion_record.get("error"))
    policy = Policy.from_config(json.loads(policy_json), task=record["candidate"].get("task", "binary"))
    verdict = decide(record["candidate"]["metrics"], champion, policy,
                     fairness=record["candidate"].get("fairness"))
    with open(decision.path, "w") as handle:
        json.dump(verdict.to_dict(), handle, indent=2)
    decision.metadata.update({"passed": verdict.passed, "reasons": verdict.reasons})
    return verdict.passed
