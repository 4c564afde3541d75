"""Validate: check new data against the production model's training schema before training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Anomaly:
    """One finding: which column, which check, what was seen and what is allowed."""

    column: str
    check: str
    observed: str
    allowed: str
    blocking: bool

    def message(self) -> str:
        return f"{self.column}: {self.check} (observed {self.observed}; allowed {self.allowed})"


@dataclass
class Report:
    """Validation outcome; ``passed`` is False when any anomaly blocks."""

    anomalies: list[Anomaly] = field(default_factory=list)
    reference_version: int | None = None

    @property
    def passed(self) -> bool:
        return not any(a.blocking for a in self.anomalies)

    @property
    def warnings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if not a.blocking]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reference_version": self.reference_version,
                "anomalies": [asdict(a) for a in self.anomalies]}


def validate(frame: pd.DataFrame, reference_schema: dict[str, Any] | None, target: str,
             reference_version: int | None = None) -> Report:
    """Compare ``frame`` with the production version's input schema (if there is one)."""
    report = Report(reference_version=reference_version)
    if not reference_schema:
        return report
    present = set(frame.columns)
    for column in reference_schema.get("columns", []):
        if column["name"] not in present:
            report.anomalies.append(Anomaly(column["name"], "missing column", "absent", "present", True))
    return report
