"""The HTML report: every section, every plot as an embedded PNG, tables of anomalies and gate
rules; also for a run that stopped at validation. Built from real step outputs."""

import base64
from html.parser import HTMLParser

import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.serving.runtime import OnnxModel
from tollgate.steps.evaluate import evaluate_model
from tollgate.steps.gate import Champion, Policy, decide
from tollgate.steps.preprocess import build_feature_spec, split_dataset
from tollgate.steps.report import SECTIONS, ReportInputs, render_report, text_summary
from tollgate.steps.train import train_candidate
from tollgate.steps.validate import infer_data_schema, validate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReportParser(HTMLParser):
    """Collects section ids, image sources/alts, table headers and the text of each section."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.headers, self.text = [], [], [], {}
        self._section, self._in_th = None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs["id"]
            self.sections.append(self._section)
            self.text[self._section] = ""
        elif tag == "img":
            self.images.append((self._section, attrs["src"], attrs.get("alt")))
        elif tag == "th":
            self._in_th = True

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th:
            self.headers.append(data)
        if self._section:
            self.text[self._section] += data


def parse(document):
    parser = ReportParser()
    parser.feed(document)
    return parser


@pytest.fixture(scope="module")
def inputs():
    """Validation with drift, evaluation with fairness and a gate decision, from the real steps."""
    reference = infer_data_schema(generate_applicants(rows=1000, seed=7), "defaulted", 1,
                                  ["applicant_id", "application_date"])
    frame = generate_applicants(rows=1000, seed=8, drift=1.0)
    validation = validate(frame, reference, target="defaulted", positive_label=1, min_rows=200, reference_version=1,
                          ignored=["applicant_id", "application_date"])
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date")
    splits = split_dataset(frame, spec, 0.3, 0.2, 42, extra_columns=["gender", "age"])
    trained = train_candidate(splits.train, splits.validation, {"candidate_id": "logreg", "family": "logistic_regression",
                                                                "params": {"max_iter": 300}}, spec)
    model = OnnxModel(trained.onnx, spec.schema)  # evaluate scores the graph, as in the pipeline
    fairness = {"sensitive_attributes": [{"column": "gender"}, {"column": "age", "bins": [30, 50]}],
                "min_group_size": 20}
    candidate = {"candidate_id": "logreg", "family": "logistic_regression",
                 **evaluate_model(model, splits.test, spec.columns, fairness=fairness, threshold=0.3)}
    champion_metrics = {**candidate["metrics"], "roc_auc": candidate["metrics"]["roc_auc"] + 0.05}
    policy = Policy(absolute={"roc_auc": {"min": 0.6}}, max_degradation={"roc_auc": 0.005},
                    fairness={"min_disparate_impact": 0.5, "max_equal_opportunity_difference": 0.5})
    decision = decide(candidate["metrics"], Champion(1, champion_metrics), policy, fairness=candidate["fairness"])
    return ReportInputs(model_name="credit-default", run_id="run-1",
                        data={"source": "builtin", "rows": len(frame), "window": None},
                        validation=validation.to_dict(),
                        evaluation={"candidate": candidate, "champion": {"version": 1, "metrics": champion_metrics}},
                        decision=decision.to_dict())


def test_report_has_every_section_and_every_plot_as_an_embedded_png(inputs):
    document = render_report(inputs)
    parsed = parse(document)
    assert parsed.sections == [key for key, _ in SECTIONS]
    alts = [alt for _, _, alt in parsed.images]
    assert alts == ["drift per feature", "ROC curve", "precision-recall curve", "calibration curve",
                    "confusion matrix", "feature importance", "fairness gender", "fairness age"]
    for _, source, _ in parsed.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert "http://" not in document and "https://" not in document and "<script" not in document
    # tables: anomalies (with severity), drift, metrics, importance, per-group fairness, gate rules
    for header in ("check", "observed", "allowed", "severity", "measure", "threshold", "selection rate", "TPR",
                   "FPR", "rule", "result"):
        assert header in parsed.headers
    assert "channel" in parsed.text["validation"] and "unseen_categories" in parsed.text["validation"]
    assert "drifted" in parsed.text["drift"]
    gate = parsed.text["gate"]
    assert "BLOCKED" in gate and "roc_auc vs champion" in gate and "fail" in gate and "pass" in gate
    assert "gender disparate impact" in gate and "age equal-opportunity difference" in gate


def test_text_summary_names_drift_fairness_and_failed_rules(inputs):
    lines = text_summary(inputs)
    assert any(line.startswith("validation: passed") for line in lines)
    assert any(line.startswith("drift: ") and "channel" in line for line in lines)
    assert any(line.startswith("fairness gender: disparate impact") for line in lines)
    assert "gate: BLOCKED" in lines
    assert any(line.startswith("  FAIL: roc_auc") for line in lines)


def test_a_run_stopped_by_validation_still_renders_with_notes(inputs):
    stopped = ReportInputs(model_name="credit-default", validation={
        "passed": False, "reference_version": 1, "rows": 10, "note": "", "drift": [],
        "anomalies": [{"column": "(table)", "check": "too_few_rows", "observed": "10 rows",
                       "allowed": ">= 200 rows", "blocking": True}]})
    parsed = parse(render_report(stopped))
    assert parsed.sections == [key for key, _ in SECTIONS] and parsed.images == []
    assert "too_few_rows" in parsed.text["validation"] and "blocking" in parsed.text["validation"]
    assert "not reached" in parsed.text["summary"]
    assert "stopped before the evaluate step" in parsed.text["performance"]
