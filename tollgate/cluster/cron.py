"""KFP cron expressions: six fields, seconds first (robfig/cron), checked before anything is sent.

KFP hands the expression to robfig/cron with a seconds field, so the classic five-field
``0 2 * * *`` does not mean "daily at 02:00" there (kubeflow/pipelines#5014). This module
rejects it with the six-field spelling to use instead, and can list the next fire times
so that a schedule can be checked by eye before it is created.

Why not croniter (checked with croniter 7.0.0, ``second_at_beginning=True``): it reads a
different dialect than the robfig/cron that KFP runs. It accepts ``0 0 5-2 * * *`` (robfig
refuses a backwards range) and a seventh (year) field; with ``0 0 0 */2 * MON`` it fires on
any odd day *or* Monday, where robfig treats a ``*/2`` day field as unrestricted and fires
only on Mondays that are odd days; and its errors do not name the field ("[0 0 24 * * *] is
not acceptable, out of range"). A schedule checked here must fire when KFP fires it, so this
module implements robfig's rules (about 100 lines) and is tested against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from tollgate.errors import TollgateError


class CronError(TollgateError):
    """A cron expression KFP would reject or misread."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    _Field("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_PART = re.compile(r"^(?P<range>\*|\?|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>\d+))?$")


@dataclass(frozen=True)
class CronSchedule:
    """A parsed six-field expression: the allowed values of each field."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, day: datetime) -> bool:
        """robfig/cron day rule: if both day fields are restricted, either may match; else both must."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_times(self, after: datetime, count: int = 3) -> list[datetime]:
        """The next ``count`` fire times strictly after ``after`` (naive datetimes, read as UTC)."""
        found: list[datetime] = []
        day = after.replace(hour=0, minute=0, second=0, microsecond=0)
        for _ in range(366 * 5):
            if self.matches_day(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            moment = day.replace(hour=hour, minute=minute, second=second)
                            if moment > after:
                                found.append(moment)
                                if len(found) == count:
                                    return found
            day += timedelta(days=1)
        return found


def _value(text: str, field: _Field, expression: str) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names.index(upper) + field.low
    if not text.isdigit():
        raise CronError(f"cron {expression!r}: {text!r} is not a valid {field.name}"
                        + (f" (use {field.low}-{field.high} or {', '.join(field.names[:3])}, ...)" if field.names else
                           f" (use {field.low}-{field.high})"))
    number = int(text)
    if not field.low <= number <= field.high:
        raise CronError(f"cron {expression!r}: {field.name} {number} is out of range {field.low}-{field.high}")
    return number


def _parse_field(text: str, field: _Field, expression: str) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    restricted = True
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise CronError(f"cron {expression!r}: cannot read {field.name} field {text!r}")
        span, step = match.group("range"), match.group("step")
        if span == "?" and field.name not in ("day of month", "day of week"):
            raise CronError(f"cron {expression!r}: '?' is only allowed in the day-of-month and day-of-week fields")
        if span in ("*", "?"):
            low, high = field.low, field.high
            # robfig/cron marks any '*' or '?' part (even '*/2') as unrestricted for the day rule.
            restricted = False
        elif "-" in span:
            low, high = (_value(bound, field, expression) for bound in span.split("-"))
            if low > high:
                raise CronError(f"cron {expression!r}: {field.name} range {span} runs backwards")
        else:
            low = _value(span, field, expression)
            high = field.high if step else low
        stride = int(step) if step else 1
        if stride == 0:
            raise CronError(f"cron {expression!r}: a step of 0 in the {field.name} field never fires")
        values.update(range(low, high + 1, stride))
    return frozenset(values), restricted


def parse_cron(expression: str) -> CronSchedule:
    """Parse and validate a KFP cron expression, or raise :class:`CronError` saying what to write."""
    fields = expression.split()
    if len(fields) == 5:
        raise CronError(
            f"cron {expression!r} has 5 fields, but KFP reads 6 with SECONDS first (robfig/cron); "
            f"a 5-field expression would fire at the wrong times. Did you mean {'0 ' + expression!r}? "
            "Daily at 02:00 UTC is '0 0 2 * * *'."
        )
    if len(fields) != 6:
        raise CronError(f"cron {expression!r} has {len(fields)} fields; KFP needs 6: "
                        "second minute hour day-of-month month day-of-week (daily at 02:00 UTC: '0 0 2 * * *')")
    parsed = [_parse_field(text, field, expression) for text, field in zip(fields, FIELDS, strict=True)]
    return CronSchedule(
        expression=expression,
        seconds=parsed[0][0], minutes=parsed[1][0], hours=parsed[2][0],
        days=parsed[3][0], months=parsed[4][0], weekdays=parsed[5][0],
        days_restricted=parsed[3][1], weekdays_restricted=parsed[5][1],
    )
