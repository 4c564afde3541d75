"""The gate: decide whether a candidate may replace the production champion.

Every rule that can stop a promotion here, as in TFX's Evaluator plus fairness:

* **absolute threshold**, per metric in ``gate.absolute``: the candidate's test metric is
  outside ``{min, max}``, or was not measured;
* **change threshold**, per metric in ``gate.max_degradation``: the candidate is worse than
  the champion on the same test rows by more than the tolerance, or either value is missing
  (skipped when there is no champion);
* **champion comparable**: a champion exists but could not score this test set (a column it
  needs is gone, it was trained for another task). A champion whose files fail their digest,
  or whose graph is missing or does not load, stops the run in evaluate instead, with the
  registry commands that get past it;
* **disparate impact**, per sensitive attribute, when ``gate.fairness.min_disparate_impact``
  is set: the ratio is lower, or could not be measured;
* **equal-opportunity difference**, per sensitive attribute, when
  ``gate.fairness.max_equal_opportunity_difference`` is set: the gap is larger, or could not
  be measured;
* **fairness measured**, when either ``gate.fairness`` bound is set: evaluate skipped fairness
  measures the bounds were meant to hold (a multiclass model with no class named in
  ``fairness.classes``, or a named class the model does not have), so a bound would otherwise
  apply to nothing.

Every rule is reported, passed or not, so the summary can show exactly why a candidate was or
was not promoted. Before the gate, validation can stop the run; after it, infra-validation
can, and promotion itself is conditional on the champion still being the one scored here
(see :mod:`tollgate.steps.deploy`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tollgate.metrics import LOWER_IS_BETTER
from tollgate.records import AttributeFairness, ChampionEvaluation, Decision, Evaluation, GroupRates, Rule


@dataclass(frozen=True)
class Policy:
    """Thresholds from ``gate`` in the config."""

    absolute: dict[str, dict[str, float | None]] = field(default_factory=dict)
    max_degradation: dict[str, float] = field(default_factory=dict)
    # min_disparate_impact / max_equal_opportunity_difference; None or absent = not bounded.
    fairness: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, gate: Mapping[str, Any], task: str = "binary") -> Policy:
        """The policy for a ``task``: a multiclass model is held to ``gate.multiclass``'s thresholds
        (multiclass metrics), with the same fairness bounds."""
        rules = (gate.get("multiclass") or {}) if task == "multiclass" else gate
        return cls(absolute={k: dict(v) for k, v in rules.get("absolute", {}).items()},
                   max_degradation=dict(rules.get("max_degradation", {})),
                   fairness=dict(gate.get("fairness") or {}))


@dataclass(frozen=True)
class GatePolicy:
    """The gate task's settings: the ``gate`` config section as two policies, one per task; the
    evaluation's task picks which one holds (``gate.multiclass`` for a multiclass model). Built
    from the config at compile time and passed as JSON, so the gate task reads typed fields
    without importing pydantic."""

    binary: Policy
    multiclass: Policy

    @classmethod
    def from_config(cls, gate: Mapping[str, Any]) -> GatePolicy:
        """From the ``gate`` section (``GateConfig.model_dump()``)."""
        return cls(Policy.from_config(gate, "binary"), Policy.from_config(gate, "multiclass"))

    def for_task(self, task: str) -> Policy:
        return self.multiclass if task == "multiclass" else self.binary

    def to_json(self) -> str:
        """Deterministic JSON (the same policy gives the same text, so the same cache key)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GatePolicy:
        value = json.loads(text)
        return cls(Policy(**value["binary"]), Policy(**value["multiclass"]))


def decide(candidate: dict[str, float], champion: ChampionEvaluation | None, policy: Policy,
           fairness: Mapping[str, AttributeFairness] | None = None, fairness_skipped: str | None = None) -> Decision:
    """Check ``candidate`` test metrics against ``policy`` and, if present, the ``champion``.

    ``fairness`` is the candidate's :class:`~tollgate.records.AttributeFairness` per sensitive
    attribute (the evaluation record's); each is bounded by ``policy.fairness``.
    ``fairness_skipped`` is evaluate's note on fairness measures it did not compute (the
    evaluation record's), which fails the "fairness measured" rule while a bound is set.
    """
    rules = [_absolute_rule(metric, bound, candidate) for metric, bound in sorted(policy.absolute.items())]
    for attribute, record in sorted((fairness or {}).items()):
        rules.extend(_fairness_rules(attribute, record, policy.fairness))
    bounded = sorted(f"gate.fairness.{key}" for key, bound in policy.fairness.items() if bound is not None)
    if fairness_skipped and bounded:
        rules.append(Rule("fairness measured", "-", False, None, "every bounded measure measured",
                          f"fairness was not measured as {' and '.join(bounded)} require: {fairness_skipped}; "
                          "or set those bounds to null to only report fairness"))
    if champion is not None:
        if champion.error:
            rules.append(Rule("champion comparable", "-", False, None, "champion scores the test set",
                              f"champion v{champion.version}: {champion.error}"))
        else:
            rules.extend(_change_rule(metric, tolerance, candidate, champion)
                         for metric, tolerance in sorted(policy.max_degradation.items()))
    failed = [r for r in rules if not r.passed]
    if failed:
        reasons = [r.detail for r in failed]
    elif champion is None:
        reasons = ["no champion yet: absolute thresholds passed, change thresholds skipped"]
    else:
        reasons = [f"meets every threshold and is within tolerance of champion v{champion.version}"]
    return Decision(passed=not failed, reasons=reasons, rules=rules,
                    champion_version=None if champion is None else champion.version)


def _absolute_rule(metric: str, bound: dict[str, float | None], candidate: dict[str, float]) -> Rule:
    low, high = bound.get("min"), bound.get("max")
    allowed = " and ".join(p for p in (f">= {low:g}" if low is not None else "",
                                        f"<= {high:g}" if high is not None else "") if p) or "any"
    value = candidate.get(metric)
    if value is None or math.isnan(value):
        return Rule(f"{metric} threshold", metric, False, None, allowed, f"{metric} was not measured")
    passed = (low is None or value >= low) and (high is None or value <= high)
    verdict = "meets" if passed else "fails"
    return Rule(f"{metric} threshold", metric, passed, value, allowed,
                f"{metric} {value:.4f} {verdict} the threshold {allowed}")


def _change_rule(metric: str, tolerance: float, candidate: dict[str, float], champion: ChampionEvaluation) -> Rule:
    value, baseline = candidate.get(metric), (champion.metrics or {}).get(metric)
    name = f"{metric} vs champion"
    if value is None or baseline is None:
        return Rule(name, metric, False, value, f"within {tolerance:g} of champion", f"{metric} missing for comparison")
    # Degradation is positive when the candidate is worse, whichever direction is better.
    degradation = (value - baseline) if metric in LOWER_IS_BETTER else (baseline - value)
    passed = degradation <= tolerance + 1e-12
    direction = "worse" if degradation > 0 else "better"
    return Rule(name, metric, passed, value, f"at most {tolerance:g} worse than {baseline:.4f}",
                f"{metric} {value:.4f} is {abs(degradation):.4f} {direction} than champion "
                f"v{champion.version} ({baseline:.4f}); tolerance {tolerance:g}")


# policy key -> (measure in the fairness record, comparison, label)
_FAIRNESS_BOUNDS = {
    "min_disparate_impact": ("disparate_impact", ">=", "disparate impact"),
    "max_equal_opportunity_difference": ("equal_opportunity_difference", "<=", "equal-opportunity difference"),
}


def _fairness_rules(attribute: str, record: AttributeFairness, bounds: dict[str, float | None]) -> list[Rule]:
    rules = []
    for key, (measure, comparison, label) in _FAIRNESS_BOUNDS.items():
        bound = bounds.get(key)
        if bound is None:
            continue
        name, allowed = f"{attribute} {label}", f"{comparison} {bound:g}"
        value = record.measure(measure)
        if value is None:
            reason = record.unmeasured.get(measure, "not reported")
            rules.append(Rule(name, measure, False, None, allowed,
                              f"{attribute}: {label} could not be measured ({reason}); add test rows, coarsen "
                              f"the groups, or change decision_threshold or fairness.min_group_positives"))
            continue
        passed = value >= bound - 1e-12 if comparison == ">=" else value <= bound + 1e-12
        groups = ", ".join(f"{g.group} {_rate(g, measure)}" for g in record.groups if g.bounded)
        rules.append(Rule(name, measure, passed, value, allowed,
                          f"{attribute}: {label} {value:.4f} {'meets' if passed else 'fails'} {allowed} ({groups})"))
    return rules


def _rate(group: GroupRates, measure: str) -> str:
    value, label = (group.selection_rate, "selected") if measure == "disparate_impact" else (group.tpr, "TPR")
    return f"{label} {value:.3f}" if value is not None else f"{label} n/a"


def run_gate(evaluation: Evaluation, policy: GatePolicy) -> Decision:
    """The gate as the DAG runs it: the candidate against the champion under the policy for its
    task (a multiclass candidate is held to ``gate.multiclass``)."""
    candidate = evaluation.candidate
    return decide(candidate.metrics, evaluation.champion, policy.for_task(candidate.task),
                  fairness=candidate.fairness, fairness_skipped=candidate.fairness_skipped)
