"""Timeframes and anchors (DESIGN: timeframes 1m 5m 15m 1h 4h 1d, aligned to the UTC epoch)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTE_MS = 60_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday: ISO weeks (Monday 00:00 UTC) start 4 days after epoch-aligned weeks.
_WEEK_OFFSET_MS = 4 * DAY_MS
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

TIMEFRAMES_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": DAY_MS,
}


def timeframe_ms(name: str) -> int:
    try:
        return TIMEFRAMES_MS[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r}; one of {', '.join(TIMEFRAMES_MS)}") from None


def align(time_ms: int, size_ms: int) -> int:
    """Start of the UTC-epoch-aligned bucket of `size_ms` holding `time_ms`."""
    return time_ms - time_ms % size_ms


def lookback_range(now_ms: int, timeframe: str, lookback: int) -> tuple[int, int]:
    """[start, end) of the last `lookback` bars of `timeframe`, the current (open) bar included."""
    size = timeframe_ms(timeframe)
    end = align(now_ms, size) + size
    return end - lookback * size, end


def utc_day(time_ms: int) -> tuple[int, int]:
    start = align(time_ms, DAY_MS)
    return start, start + DAY_MS


def utc_week(time_ms: int) -> tuple[int, int]:
    """The ISO week (Monday 00:00 UTC) holding time_ms."""
    start = align(time_ms - _WEEK_OFFSET_MS, WEEK_MS) + _WEEK_OFFSET_MS
    return start, start + WEEK_MS


def parse_hhmm(text: str) -> dt.time:
    try:
        hours, minutes = text.split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"must be HH:MM, got {text!r}") from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None


def session_range(time_ms: int, tz: str, start: str, end: str, sessions_back: int = 0) -> tuple[int, int]:
    """[start, end) in UTC ms of the session (local wall-clock start..end in `tz`, end <= start meaning
    the next day) that holds time_ms or, between sessions, the last one that began before it;
    `sessions_back` steps to earlier sessions. DST is the zone's: local times map through it."""
    zi = zone(tz)
    t_start, t_end = parse_hhmm(start), parse_hhmm(end)
    local = _local(time_ms, zi)
    day = local.date()

    def bounds(d: dt.date) -> tuple[int, int]:
        s = dt.datetime.combine(d, t_start, tzinfo=zi)
        e_day = d if t_end > t_start else d + dt.timedelta(days=1)
        e = dt.datetime.combine(e_day, t_end, tzinfo=zi)
        return _ms(s), _ms(e)

    d = day + dt.timedelta(days=1)
    while bounds(d)[0] > time_ms:
        d -= dt.timedelta(days=1)
    d -= dt.timedelta(days=sessions_back)
    return bounds(d)


def _local(time_ms: int, zi: ZoneInfo) -> dt.datetime:
    return (_EPOCH + dt.timedelta(milliseconds=time_ms)).astimezone(zi)


def _ms(value: dt.datetime) -> int:
    delta = value.astimezone(dt.UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
