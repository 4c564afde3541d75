"""A seeded, realistic credit-card-applicant table for demos, tests and benchmarks.

Numeric columns are skewed and carry outliers, categoricals have uneven shares, some
values are missing, and about 20% of applicants default with real (non-linear) signal.
``drift`` moves the population the way a downturn would: lower incomes, higher
utilisation, more online applications and a new channel the reference never saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "defaulted"
MULTICLASS_TARGET = "risk_band"
DATE_COLUMN = "application_date"
_BAND_NAMES = {3: ["low", "medium", "high"], 4: ["low", "medium", "high", "very_high"],
               5: ["very_low", "low", "medium", "high", "very_high"]}


def band_names(classes: int) -> list[str]:
    """The text classes of the multiclass ``risk_band`` target, lowest risk first."""
    return _BAND_NAMES.get(classes, [f"band_{i + 1}" for i in range(classes)])


def generate_applicants(rows: int = 20_000, seed: int = 7, drift: float = 0.0,
                        start_date: str = "2026-01-01", days: int = 90, classes: int = 2) -> pd.DataFrame:
    """Return ``rows`` applicants; the same arguments always give the same table.

    ``classes`` 2 gives the 0/1 ``defaulted`` target. 3 or more replace it with
    ``risk_band``: text classes (:func:`band_names`) cut from the same default risk, each
    class half as common as the one below it, so the riskiest band is the rare one.
    """
    if classes < 2:
        raise ValueError("classes must be at least 2")
    if rows < 1:
        raise ValueError("rows must be positive")
    if not 0.0 <= drift <= 1.0:
        raise ValueError("drift must be between 0 and 1")
    rng = np.random.default_rng(seed)
    n = rows

    age = np.clip(rng.normal(41 - 3 * drift, 12, n), 18, 90).round()
    income = rng.lognormal(np.log(52_000) - 0.25 * drift, 0.55, n)
    income[rng.random(n) < 0.004] *= rng.uniform(8, 30)  # a few very high earners
    employment_years = np.clip(rng.gamma(2.0, 3.5, n) * (age - 17) / 40, 0, 50).round(1)
    credit_history_months = np.clip((age - 18) * 12 * rng.beta(2, 2, n), 0, None).round()
    credit_score = np.clip(rng.normal(690 - 25 * drift, 70, n), 300, 850).round()
    revolving_utilization = np.clip(rng.beta(2, 5 - 2 * drift, n), 0, 1)
    revolving_utilization[rng.random(n) < 0.01] = rng.uniform(1.0, 2.5)  # over-limit accounts
    debt_to_income = np.clip(rng.gamma(2.2, 0.09 + 0.03 * drift, n), 0, 3)
    num_credit_lines = rng.poisson(4 + 2 * drift, n)
    num_delinquencies_2y = rng.poisson(0.25 + 0.3 * drift, n)
    num_inquiries_6m = rng.poisson(1.1 + drift, n)
    months_at_address = np.clip(rng.exponential(48, n), 0, 600).round()
    num_dependents = rng.choice([0, 1, 2, 3, 4, 5], n, p=[0.42, 0.22, 0.2, 0.1, 0.04, 0.02])
    requested_limit = (income * rng.uniform(0.05, 0.3, n)).round(-2)
    existing_balance = (requested_limit * revolving_utilization * rng.uniform(0.5, 3, n)).round(2)

    employment_type = _choice(rng, n, ["salaried", "self_employed", "contract", "unemployed", "retired"],
                              [0.62, 0.14, 0.12, 0.06 + 0.04 * drift, 0.06 - 0.04 * drift])
    home_ownership = _choice(rng, n, ["rent", "mortgage", "own", "other"], [0.42, 0.38, 0.17, 0.03])
    marital_status = _choice(rng, n, ["single", "married", "divorced", "widowed"], [0.4, 0.45, 0.12, 0.03])
    education = _choice(rng, n, ["high_school", "bachelor", "master", "doctorate", "other"],
                        [0.35, 0.38, 0.18, 0.04, 0.05])
    region = _choice(rng, n, ["north", "south", "east", "west", "central"], [0.22, 0.26, 0.18, 0.2, 0.14])
    channels = ["online", "branch", "partner", "mobile_app"]
    channel_p = np.array([0.45 + 0.1 * drift, 0.3 - 0.2 * drift, 0.25 - 0.1 * drift, 0.2 * drift])
    channel = _choice(rng, n, channels, channel_p / channel_p.sum())
    card_type = _choice(rng, n, ["classic", "gold", "platinum"], [0.6, 0.3, 0.1])
    gender = _choice(rng, n, ["female", "male"], [0.49, 0.51])
    has_mortgage = home_ownership == "mortgage"
    prior_bankruptcy = rng.random(n) < 0.03 + 0.02 * drift

    # Default risk: mostly utilisation, score, DTI and delinquencies, with an interaction
    # (young + high utilisation) that linear models only partly capture.
    logit = (
        -2.1
        + 2.4 * (revolving_utilization - 0.3)
        - 0.012 * (credit_score - 690)
        + 1.6 * (debt_to_income - 0.2)
        + 0.55 * num_delinquencies_2y
        + 0.18 * num_inquiries_6m
        - 0.35 * (np.log(income) - np.log(52_000))
        + 1.1 * prior_bankruptcy
        + 0.8 * ((age < 27) & (revolving_utilization > 0.6))
        + np.select([employment_type == "unemployed", employment_type == "contract"], [0.9, 0.3], 0.0)
        - 0.01 * employment_years
        + rng.normal(0, 0.6, n)
    )
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")

    start = pd.Timestamp(start_date)
    dates = start + pd.to_timedelta(rng.integers(0, days, n), unit="D")

    frame = pd.DataFrame({
        "applicant_id": np.arange(1, n + 1, dtype="int64") + seed * 10_000_000,
        DATE_COLUMN: dates.normalize(),
        "age": age.astype("int64"),
        "gender": gender,
        "annual_income": income.round(2),
        "employment_type": employment_type,
        "employment_years": employment_years,
        "home_ownership": home_ownership,
        "has_mortgage": has_mortgage,
        "marital_status": marital_status,
        "num_dependents": num_dependents.astype("int64"),
        "education": education,
        "region": region,
        "channel": channel,
        "card_type": card_type,
        "credit_score": credit_score,
        "credit_history_months": credit_history_months,
        "num_credit_lines": num_credit_lines.astype("int64"),
        "num_delinquencies_2y": num_delinquencies_2y.astype("int64"),
        "num_inquiries_6m": num_inquiries_6m.astype("int64"),
        "revolving_utilization": revolving_utilization.round(4),
        "debt_to_income": debt_to_income.round(4),
        "requested_limit": requested_limit,
        "existing_balance": existing_balance,
        "months_at_address": months_at_address,
        "prior_bankruptcy": prior_bankruptcy,
        TARGET: defaulted,
    })
    if classes >= 3:
        # Same risk score, cut into bands: the binary table's random draws are untouched.
        weights = 0.5 ** np.arange(classes)
        cuts = np.quantile(logit, np.cumsum(weights / weights.sum())[:-1])
        frame = frame.drop(columns=[TARGET])
        frame[MULTICLASS_TARGET] = np.asarray(band_names(classes), dtype=object)[np.searchsorted(cuts, logit)]
    # Missing values where real applications have them: optional or unverifiable fields.
    for column, share in (("employment_years", 0.04), ("credit_score", 0.02),
                          ("months_at_address", 0.05), ("education", 0.03), ("annual_income", 0.01)):
        frame.loc[rng.random(n) < share, column] = np.nan if frame[column].dtype != object else None
    return frame


def _choice(rng: np.random.Generator, n: int, values: list[str], p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p / p.sum())]
