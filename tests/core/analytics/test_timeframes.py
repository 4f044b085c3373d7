from __future__ import annotations

import datetime as dt

import pytest

from marketdata.core.analytics.timeframes import (
    align,
    lookback_range,
    session_range,
    timeframe_ms,
    utc_day,
    utc_week,
)


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def test_alignment_and_anchors() -> None:
    t = ms("2026-11-18T13:47:12.345+00:00")  # a Wednesday
    assert align(t, timeframe_ms("4h")) == ms("2026-11-18T12:00:00+00:00")
    assert utc_day(t) == (ms("2026-11-18T00:00:00+00:00"), ms("2026-11-19T00:00:00+00:00"))
    assert utc_week(t)[0] == ms("2026-11-16T00:00:00+00:00")  # Monday
    assert lookback_range(t, "1h", 3) == (ms("2026-11-18T11:00:00+00:00"), ms("2026-11-18T14:00:00+00:00"))
    with pytest.raises(ValueError):
        timeframe_ms("2h")


def test_sessions_follow_the_zone_and_dst() -> None:
    # New York 09:30-16:00: EDT (UTC-4) in July, EST (UTC-5) in December
    s, e = session_range(ms("2026-07-15T15:00:00+00:00"), "America/New_York", "09:30", "16:00")
    assert (s, e) == (ms("2026-07-15T13:30:00+00:00"), ms("2026-07-15T20:00:00+00:00"))
    s, e = session_range(ms("2026-12-15T15:00:00+00:00"), "America/New_York", "09:30", "16:00")
    assert (s, e) == (ms("2026-12-15T14:30:00+00:00"), ms("2026-12-15T21:00:00+00:00"))
    # before today's open: yesterday's session; one back: the day before
    s, _ = session_range(ms("2026-12-15T10:00:00+00:00"), "America/New_York", "09:30", "16:00")
    assert s == ms("2026-12-14T14:30:00+00:00")
    s, _ = session_range(ms("2026-12-15T15:00:00+00:00"), "America/New_York", "09:30", "16:00", 1)
    assert s == ms("2026-12-14T14:30:00+00:00")
    # overnight session (end <= start: next day)
    s, e = session_range(ms("2026-12-15T02:00:00+00:00"), "Asia/Tokyo", "18:00", "06:00")
    assert (s, e) == (ms("2026-12-14T09:00:00+00:00"), ms("2026-12-14T21:00:00+00:00"))
    with pytest.raises(ValueError):
        session_range(0, "Mars/Olympus", "09:30", "16:00")
