"""Report component: the run's HTML report, visible in the KFP UI; runs whether or not the gate passed."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Output


def report(model_name: str, run_id: str, raw: Input[Dataset], validation: Input[Artifact],
           evaluation: Input[Artifact], decision: Input[Artifact], html: Output[HTML]) -> str:
    """Render validation, drift, performance, importance, fairness and gate rules into one page;
    returns the gate verdict ("passed" or "blocked")."""
    from tollgate.artifacts import read_record
    from tollgate.records import DataLineage, Decision, Evaluation, ValidationReport
    from tollgate.steps.report import kfp_metadata, run_report

    verdict = read_record(Decision, decision.path)  # this task runs after the gate: every input exists
    checks = read_record(ValidationReport, validation.path)
    page = run_report(model_name, run_id, DataLineage.from_metadata(raw.metadata), checks, read_record(Evaluation, evaluation.path),
                      verdict)
    with open(html.path, "w") as handle:
        handle.write(page)
    html.metadata.update(kfp_metadata(checks, verdict))
    return verdict.outcome
