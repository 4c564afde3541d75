"""Gate component: apply the promotion policy; its boolean output drives ``dsl.If``."""

from kfp.dsl import Artifact, Input, Output


def gate(policy_json: str, evaluation: Input[Artifact], decision: Output[Artifact]) -> bool:
    """Decide candidate vs champion (rules: :mod:`tollgate.steps.gate`). Returns a single bool:
    kfp.local resolves only ``<task>-Output`` references in conditions, not NamedTuple fields."""
    from tollgate.artifacts import read_record, write_record
    from tollgate.records import Evaluation
    from tollgate.steps.gate import GatePolicy, run_gate

    verdict = run_gate(read_record(Evaluation, evaluation.path), GatePolicy.from_json(policy_json))
    write_record(verdict, decision.path)
    decision.metadata.update(verdict.kfp_metadata())
    return verdict.passed
