"""Daily retraining: cron checked before anything is sent, and the data window each run reads.

No KFP cluster runs in CI: the CLI tests point at a closed port on 127.0.0.1, which shows
what is checked *before* a connection is attempted and that an absent cluster gives a clear
error, not a 25-second retry loop.
"""

import time
from datetime import datetime

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import free_port
from tollgate.cli import app
from tollgate.cluster.cron import CronError, parse_cron
from tollgate.config import load_config
from tollgate.steps.ingest import load_source, select_window


def test_daily_at_two_is_six_fields_seconds_first():
    schedule = parse_cron("0 0 2 * * *")
    assert schedule.next_times(datetime(2026, 11, 21, 4, 0), 2) == [datetime(2026, 11, 22, 2), datetime(2026, 11, 23, 2)]
    assert schedule.next_times(datetime(2026, 11, 21, 1, 59, 59), 1) == [datetime(2026, 11, 21, 2)]


def test_five_fields_are_refused_with_the_six_field_spelling():
    with pytest.raises(CronError) as raised:
        parse_cron("0 2 * * *")
    message = str(raised.value)
    assert "5 fields" in message and "SECONDS first" in message and "'0 0 2 * * *'" in message


@pytest.mark.parametrize("expression, complaint", [
    ("0 0 24 * * *", "hour 24 is out of range 0-23"),
    ("60 0 2 * * *", "second 60 is out of range 0-59"),
    ("0 0 2 0 * *", "day of month 0 is out of range 1-31"),
    ("0 0 2 * 13 *", "month 13 is out of range 1-12"),
    ("0 0 2 * * FUNDAY", "'FUNDAY' is not a valid day of week"),
    ("0 */0 * * * *", "a step of 0"),
    ("0 0 5-2 * * *", "runs backwards"),
    ("0 0 ? * * *", "'?' is only allowed"),
    ("0 0 2 * * * 2026", "7 fields"),
    ("", "0 fields"),
])
def test_bad_expressions_say_what_is_wrong(expression, complaint):
    with pytest.raises(CronError) as raised:
        parse_cron(expression)
    assert complaint in str(raised.value)


def test_names_steps_lists_and_ranges():
    weekdays = parse_cron("0 30 9 * * MON-FRI")
    assert weekdays.next_times(datetime(2026, 11, 21), 2) == [datetime(2026, 11, 23, 9, 30), datetime(2026, 11, 24, 9, 30)]
    quarter_hours = parse_cron("0 */15 8,20 * * *")
    assert [t.strftime("%H:%M") for t in quarter_hours.next_times(datetime(2026, 1, 1), 5)] == [
        "08:00", "08:15", "08:30", "08:45", "20:00"]
    assert parse_cron("0 0 0 1 jan ?").next_times(datetime(2026, 6, 1), 1) == [datetime(2027, 1, 1)]


def test_restricted_day_of_month_and_week_fire_on_either():
    """robfig/cron: with both day fields restricted, a day matching either one fires."""
    fires = parse_cron("0 0 0 1 * MON").next_times(datetime(2026, 11, 28), 3)
    assert fires == [datetime(2026, 11, 30), datetime(2026, 12, 1), datetime(2026, 12, 7)]


def test_a_stepped_star_in_a_day_field_leaves_it_unrestricted():
    """robfig/cron v1.2.0 (the version KFP's go.mod pins): parser.go getRange sets the star bit for a
    '*' or '?' range with or without a step, and spec.go dayMatches then requires *both* day fields
    to match. So '*/2' (odd days) with MON fires only on Mondays that are odd days, where a day
    matching either field would fire under the rule of two restricted fields (and under croniter)."""
    fires = parse_cron("0 0 0 */2 * MON").next_times(datetime(2026, 11, 28), 3)
    assert fires == [datetime(2026, 12, 7), datetime(2026, 12, 21), datetime(2027, 1, 11)]
    assert all(t.weekday() == 0 and t.day % 2 == 1 for t in fires)


def test_scheduled_time_picks_the_days_before_it():
    """What a scheduled run trains on: the window_days whole days before its own fire time."""
    (fire_time,) = parse_cron("0 0 2 * * *").next_times(datetime(2026, 3, 10, 15, 0), 1)
    scheduled = fire_time.strftime("%Y-%m-%dT%H:%M:%SZ")  # as KFP resolves the placeholder
    assert scheduled == "2026-03-11T02:00:00Z"
    config = load_config(None, {"data.window_days": 7, "data.builtin.rows": 3000})

    table = load_source("builtin", config.data.builtin.model_dump())

    selected, window = select_window(table, config.data.date_column, scheduled, config.data.window_days)

    assert window == ("2026-03-04", "2026-03-11")
    days = pd.to_datetime(selected[config.data.date_column]).dt.date.astype(str)
    assert sorted(days.unique()) == [f"2026-03-{day:02d}" for day in range(4, 11)]
    unscheduled, no_window = select_window(table, config.data.date_column, "", config.data.window_days)
    assert no_window is None and len(unscheduled) == 3000 > len(selected) > 0


# -- the CLI, with no cluster to talk to -----------------------------------------------------

def _invoke(*args):
    started = time.monotonic()
    result = CliRunner().invoke(app, list(args))
    return result, time.monotonic() - started


def test_schedule_rejects_five_fields_before_connecting():
    result, elapsed = _invoke("schedule", "--cron", "0 2 * * *", "--host", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1
    assert "5 fields" in result.output and "cannot reach" not in result.output
    assert elapsed < 5


def test_schedule_needs_a_data_window():
    result, _ = _invoke("schedule", "--cron", "0 0 2 * * *", "--host", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1 and "data.window_days" in result.output


def test_schedule_with_a_valid_cron_then_needs_the_cluster():
    host = f"http://127.0.0.1:{free_port()}"
    result, elapsed = _invoke("schedule", "--cron", "0 0 2 * * *", "--window-days", "30", "--host", host)
    assert result.exit_code == 1
    assert f"cannot reach KFP at {host}" in result.output and "make cluster-up" in result.output
    assert elapsed < 10, "must not sit in kfp.Client's health-check retries"


def test_submit_refuses_paths_that_pods_cannot_read(tmp_path):
    result, _ = _invoke("submit", "--registry", str(tmp_path / "registry"), "--host", "http://127.0.0.1:1")
    assert result.exit_code == 1 and "cluster pods cannot reach" in result.output and "s3://models" in result.output
    result, _ = _invoke("submit", "--data", str(tmp_path / "a.csv"), "--host", "http://127.0.0.1:1")
    assert result.exit_code == 1 and "s3://data/" in result.output


@pytest.mark.parametrize("command", [["submit"], ["runs"]])
def test_submit_and_runs_explain_an_absent_cluster(command):
    host = f"http://127.0.0.1:{free_port()}"
    result, elapsed = _invoke(*command, "--host", host)
    assert result.exit_code == 1 and f"cannot reach KFP at {host}" in result.output
    assert elapsed < 10
