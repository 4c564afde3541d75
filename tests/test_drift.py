"""Drift: Jensen-Shannon on reference-quantile bins, L-infinity on category shares, thresholds."""

import math

import numpy as np
import pandas as pd
import pytest

from tollgate.config import ValidationConfig
from tollgate.data.builtin import generate_applicants
from tollgate.steps.drift import (
    MISSING,
    categorical_drift,
    category_shares,
    jensen_shannon,
    l_infinity,
    numeric_drift,
    numeric_profile,
    numeric_shares,
)
from tollgate.steps.validate import feature_drift, infer_data_schema


def test_jensen_shannon_matches_hand_values():
    assert jensen_shannon([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    # p=[1,0], q=[.5,.5]: m=[.75,.25]; KL(p||m)=log2(4/3); KL(q||m)=.5*log2(2/3)+.5*log2(2)
    expected = (math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5) / 2
    assert jensen_shannon([1, 0], [0.5, 0.5]) == pytest.approx(expected)
    assert jensen_shannon([2, 2], [1, 1]) == 0.0                      # counts are normalised


def test_l_infinity_is_the_largest_share_gap_over_all_categories():
    assert l_infinity({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert l_infinity({"a": 0.6, "b": 0.4}, {"a": 0.5, "b": 0.3, "c": 0.2}) == pytest.approx(0.2)
    assert category_shares(pd.Series(["x", "x", None, "y"])) == {"x": 0.5, MISSING: 0.25, "y": 0.25}


def test_numeric_bins_follow_the_reference_quantiles_and_keep_a_missing_bin():
    reference = pd.Series(np.arange(1, 101, dtype=float))
    profile = numeric_profile(reference, bins=4)
    assert profile.edges == pytest.approx([25.75, 50.5, 75.25])
    assert profile.shares == pytest.approx([0.25, 0.25, 0.25, 0.25, 0.0])
    # values equal to an edge fall in the bin it closes; out-of-range values in the open ends
    assert numeric_shares(pd.Series([25.75, -1e9, 1e9, None]), profile.edges) == [0.5, 0, 0, 0.25, 0.25]
    shifted = numeric_drift("x", profile, reference + 50, threshold=0.05)
    assert shifted.drifted and shifted.value > 0.3
    assert shifted.labels[0] == "<=25.75" and shifted.labels[-1] == MISSING
    same = categorical_drift("c", {"a": 0.5, "b": 0.5}, pd.Series(["a", "b"] * 50), threshold=0.1)
    assert same.value == 0.0 and not same.drifted


def test_builtin_drift_knob_is_detected_on_the_shifted_features_only():
    reference = infer_data_schema(generate_applicants(rows=2000, seed=7), "defaulted", 1,
                                  ["applicant_id", "application_date"])
    settings = ValidationConfig()
    calm = feature_drift(generate_applicants(rows=2000, seed=8), reference, settings)
    assert [d.column for d in calm if d.drifted] == []
    shifted = {d.column: d for d in feature_drift(generate_applicants(rows=2000, seed=8, drift=1.0), reference, settings)}
    drifted = {name for name, d in shifted.items() if d.drifted}
    assert {"channel", "revolving_utilization", "num_credit_lines"} <= drifted
    assert not drifted & {"gender", "region", "card_type", "marital_status"}   # untouched by the knob
    assert shifted["channel"].measure == "l_infinity" and shifted["credit_score"].measure == "jensen_shannon"
    # a per-feature threshold overrides the kind's default
    lenient = ValidationConfig(drift={"features": {"channel": 0.9}})
    assert not next(d for d in feature_drift(generate_applicants(rows=2000, seed=8, drift=1.0), reference, lenient)
                    if d.column == "channel").drifted
