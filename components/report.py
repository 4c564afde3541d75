"""Report component: the run's HTML report, visible in the KFP UI; runs whether or not the gate passed."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Output


def report(model_name: str, run_id: str, raw: Input[Dataset], validation: Input[Artifact],
           evaluation: Input[Artifact], decision: Input[Artifact], html: Output[HTML]) -> str:
    """Render validation, drift, performance, importance, fairness and gate rules into one page;
    returns the gate verdict ("passed" or "blocked")."""
    import json

    from tollgate.steps.report import ReportInputs, render_report

    def load(artifact):
        with open(artifact.path) as handle:
            return json.load(handle)

    gate, checks = load(decision), load(validation)  # this task runs after the gate: both exist
    inputs = ReportInputs(model_name=model_name, run_id=run_id,
                          data={key: raw.metadata.get(key) for key in ("source", "rows", "window")},
                          validation=checks, evaluation=load(evaluation), decision=gate)
    with open(html.path, "w") as handle:
        handle.write(render_report(inputs))
    verdict = "passed" if gate["passed"] else "blocked"
    html.metadata.update({"gate": verdict, "anomalies": len(checks.get("anomalies", []))})
    return verdict
