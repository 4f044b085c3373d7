"""core/composite.py: the segments rule over a composite's recorded switches, and the resolver asking
a real collector (replay exchange on loopback) for them."""

from __future__ import annotations

import pytest

from marketdata.core.composite import (
    CompositeError,
    CompositeResolver,
    CompositeUnavailable,
    Segment,
    segments_of,
)
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from tests.collector.conftest import running_stack
from tests.collector.health.test_health_replay import TWO, replay

MIN = 60_000
SPOT = InstrumentId.parse("binance-spot:BTCUSDT")
BYBIT = InstrumentId.parse("bybit-spot:BTCUSDT")
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MIN  # a whole minute


def failover(*switches: tuple[int, str, str]) -> collector_pb2.Failover:
    """best:BTCUSDT with switches (time ms, from, to); selected is the last `to`."""
    message = collector_pb2.Failover(composite="best:BTCUSDT")
    for at_ms, from_feed, to_feed in switches:
        message.switches.add(time_ns=at_ms * 1_000_000, from_feed=from_feed, to_feed=to_feed, reason="r")
    if switches:
        message.selected.CopyFrom(InstrumentId.parse(f"{switches[-1][2]}:BTCUSDT").to_proto())
    return message


def test_each_stretch_uses_the_feed_followed_then_switches_floored_to_the_minute() -> None:
    history = failover(
        (T0 + 5_000, "", "binance-spot"),  # first selection
        (T0 + 10 * MIN + 42_000, "binance-spot", "bybit-spot"),  # 10:42 into the hour -> from 10:00
        (T0 + 20 * MIN + 1, "bybit-spot", "binance-spot"),
    )
    assert segments_of(history, T0 - 30 * MIN, T0 + 30 * MIN) == (
        Segment(SPOT, T0 - 30 * MIN, T0 + 10 * MIN),  # before the first selection: the first feed
        Segment(BYBIT, T0 + 10 * MIN, T0 + 20 * MIN),
        Segment(SPOT, T0 + 20 * MIN, T0 + 30 * MIN),
    )
    # a range inside one stretch, and one starting after a switch
    assert segments_of(history, T0 + 12 * MIN, T0 + 15 * MIN) == (
        Segment(BYBIT, T0 + 12 * MIN, T0 + 15 * MIN),
    )
    assert segments_of(history, T0 + 25 * MIN, T0 + 26 * MIN) == (
        Segment(SPOT, T0 + 25 * MIN, T0 + 26 * MIN),
    )


def test_several_switches_in_one_minute_the_last_holds_it_and_truncated_history_uses_from_feed() -> None:
    history = failover(
        (T0 + 3 * MIN + 1_000, "binance-spot", "bybit-spot"),  # older switches were dropped (the last 100)
        (T0 + 3 * MIN + 30_000, "bybit-spot", "binance-spot"),
        (T0 + 3 * MIN + 50_000, "binance-spot", "bybit-spot"),
    )
    assert segments_of(history, T0, T0 + 5 * MIN) == (
        Segment(SPOT, T0, T0 + 3 * MIN),  # the feed the oldest recorded switch left
        Segment(BYBIT, T0 + 3 * MIN, T0 + 5 * MIN),
    )


def test_no_selection_yet_is_unavailable() -> None:
    with pytest.raises(CompositeUnavailable, match="no feed selected yet"):
        segments_of(collector_pb2.Failover(composite="best:BTCUSDT"), T0, T0 + MIN)
    # selected but no switch kept: the followed feed over all of it
    selected = collector_pb2.Failover(composite="best:BTCUSDT", selected=BYBIT.to_proto())
    assert segments_of(selected, T0, T0 + MIN) == (Segment(BYBIT, T0, T0 + MIN),)


async def test_no_collector_configured_is_a_clear_error() -> None:
    resolver = CompositeResolver(None)
    assert await resolver.resolve([], T0, T0 + MIN) == {}
    with pytest.raises(CompositeError) as info:
        await resolver.resolve(["best:BTCUSDT"], T0, T0 + MIN)
    assert info.value.field == "composites"
    assert "MARKETDATA_COLLECTOR_ADDR" in info.value.reason


async def test_resolves_against_the_collector_and_names_what_is_collected() -> None:
    async with running_stack(replay(TWO, rate=20), TWO, book_instruments="none") as stack:
        monitor = stack.service.collector.health
        await stack.wait_for(
            lambda: monitor.composites["best:BTCUSDT"].selected is not None, 5, "a selection"
        )
        async with create_channel(f"127.0.0.1:{stack.service.grpc.port}") as channel:
            resolver = CompositeResolver(channel)
            resolved = await resolver.resolve([" best:btcusdt"], T0, T0 + MIN)
            (composite,) = resolved.values()
            assert composite.key == "best:BTCUSDT"
            assert composite.failover.switches[0].from_feed == ""  # the first selection is recorded
            assert composite.segments == (Segment(SPOT, T0, T0 + MIN),)  # a range before it: the first feed
            assert set(composite.followed) == {SPOT}

            with pytest.raises(CompositeError) as info:
                await resolver.resolve(["best:BTCUSDT", "best:ETHUSDT"], T0, T0 + MIN, field="instruments")
            assert str(info.value) == (
                "instruments[1]: 'ETHUSDT' is not collected on any feed; composites: best:BTCUSDT"
            )
            with pytest.raises(CompositeError, match=r"composites\[0\]: 'BTCUSDT' is not a composite key"):
                await resolver.resolve(["BTCUSDT"], T0, T0 + MIN)
            with pytest.raises(CompositeError, match=r"composites\[1\]: best:BTCUSDT is given twice"):
                await resolver.resolve(["best:BTCUSDT", "best:BTCUSDT"], T0, T0 + MIN)

        # the collector gone: UNAVAILABLE-worthy, not a crash
        async with create_channel("127.0.0.1:1") as dead:
            with pytest.raises(CompositeUnavailable, match="UNAVAILABLE"):
                await CompositeResolver(dead, timeout_s=1.0).resolve(["best:BTCUSDT"], T0, T0 + MIN)
