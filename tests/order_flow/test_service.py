"""GetOrderFlow against the oracle on randomized trades stored through the real storage service, and
bad input per field."""

from __future__ import annotations

import random
import time
from decimal import Decimal

import grpc
import pytest

from marketdata.cli import flow as flow_cli
from marketdata.core.analytics.timeframes import session_range, utc_day, utc_week
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2 as vp_pb
from tests.order_flow.conftest import BTC, BTC_BYBIT, MIN, Stack, request, ticks
from tests.order_flow.oracle import OracleBar, oracle_bars, oracle_imbalances, oracle_stacks
from tests.storage.conftest import trade

DAY = 86_400_000
HOUR = 3_600_000
SIDE = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}


def random_trades(rng: random.Random, first_id: int, start: int, end: int, n: int) -> list[common_pb2.Trade]:
    times = sorted(rng.randrange(start, end) for _ in range(n))
    price = 5000
    out = []
    for k, at in enumerate(times):
        price = max(4900, min(5100, price + rng.randint(-2, 2)))
        size = rng.choice(["0.001", "0.5", "1", "2.25", "3", "0.1", "7", "12.5"])
        out.append(trade(first_id + k, f"{price / 10:.2f}", size, rng.random() < 0.5, at))
    return out


def check_bars(
    response: pb.GetOrderFlowResponse,
    expected: list[OracleBar],
    row: Decimal,
    ratio: Decimal,
    min_volume: Decimal,
    stack_rows: int,
) -> None:
    assert [b.start_time_ms for b in response.bars] == [b.start for b in expected]
    for got, want in zip(response.bars, expected, strict=True):
        rows = {Decimal(r.price): [Decimal(r.buy_volume), Decimal(r.sell_volume)] for r in got.rows}
        nonempty = {p: v for p, v in rows.items() if v != [0, 0]}
        assert nonempty == want.rows, got.start_time_ms
        assert (Decimal(got.buy_volume), Decimal(got.sell_volume)) == (want.buy, want.sell)
        assert Decimal(got.delta) == want.delta
        assert Decimal(got.cvd) == want.cvd, got.start_time_ms
        assert got.trades == want.trades
        if want.ohlc is not None:
            assert tuple(Decimal(x) for x in (got.open, got.high, got.low, got.close)) == want.ohlc
            assert (Decimal(got.max_delta), Decimal(got.min_delta)) == (want.max_delta, want.min_delta)
        imbalances = oracle_imbalances(want.rows, row, ratio, min_volume)
        assert [(Decimal(i.price), SIDE[i.side]) for i in got.imbalances] == imbalances
        stacks = [
            (SIDE[z.side], Decimal(z.price_low), Decimal(z.price_high) - row)
            for z in got.zones
            if z.kind == pb.ZONE_KIND_STACKED_IMBALANCE
        ]
        assert stacks == oracle_stacks(imbalances, row, stack_rows)


@pytest.mark.parametrize(
    "timeframe,size,row_ticks,ratio,min_volume,stacked",
    [
        ("1m", MIN, 1, "", "", 0),
        ("5m", 5 * MIN, 2, "2.5", "0.5", 2),
        ("15m", 15 * MIN, 1, "3", "", 3),
        ("1h", HOUR, 5, "1.5", "1", 4),
    ],
)
async def test_bars_match_the_oracle(
    stack: Stack, timeframe: str, size: int, row_ticks: int, ratio: str, min_volume: str, stacked: int
) -> None:
    now = int(time.time() * 1000)
    day = now - now % DAY - 2 * DAY
    rng = random.Random(timeframe)
    # trades before the range count for the CVD (utc_day anchor); the range is 3 hours of that day
    trades = random_trades(rng, 1, day, day + 6 * HOUR, 3000)
    await stack.storage.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
    start, end = day + 2 * HOUR + 7 * MIN, day + 5 * HOUR
    response = await stack.stub.GetOrderFlow(
        request(
            [BTC],
            start,
            end,
            timeframe,
            row_ticks=row_ticks,
            include_rows=True,
            imbalance=pb.ImbalanceParameters(ratio=ratio, min_volume=min_volume, stacked_min_rows=stacked),
        )
    )
    row = Decimal("0.10") * row_ticks
    aligned = start - start % size
    expected = oracle_bars(ticks(trades), aligned, end, size, row, lambda t: utc_day(t)[0], now)
    check_bars(response, expected, row, Decimal(ratio or 3), Decimal(min_volume or 0), stacked or 3)
    e = response.parameters
    assert (e.imbalance_ratio, e.stacked_min_rows, e.cvd_anchor) == (
        ratio or "3",
        stacked or 3,
        pb.CVD_ANCHOR_KIND_UTC_DAY,
    )
    assert e.cvd_anchor_start_time_ms == day
    assert response.coverage.minutes_expected == (e.end_time_ms - e.start_time_ms) // MIN


@pytest.mark.parametrize("anchor", ["utc_week", "session", "timestamp"])
async def test_cvd_anchors(stack: Stack, anchor: str) -> None:
    now = int(time.time() * 1000)
    day = now - now % DAY - 2 * DAY
    rng = random.Random(anchor)
    trades = random_trades(rng, 1, day - DAY, day + DAY, 2000)
    await stack.storage.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
    if anchor == "utc_week":
        cvd = pb.CvdAnchor(kind=pb.CVD_ANCHOR_KIND_UTC_WEEK)
        first = lambda t: utc_week(t)[0]  # noqa: E731
    elif anchor == "session":
        cvd = pb.CvdAnchor(
            kind=pb.CVD_ANCHOR_KIND_SESSION,
            session=vp_pb.Session(time_zone="America/New_York", start="09:30", end="16:00"),
        )
        first = lambda t: session_range(t, "America/New_York", "09:30", "16:00")[0]  # noqa: E731
    else:
        at = day - 5 * HOUR - 17 * MIN
        cvd = pb.CvdAnchor(kind=pb.CVD_ANCHOR_KIND_TIMESTAMP, time_ms=at)
        first = lambda t: at  # noqa: E731
    start, end = day + 10 * HOUR, day + 20 * HOUR
    response = await stack.stub.GetOrderFlow(request([BTC], start, end, "1h", cvd_anchor=cvd))
    expected = oracle_bars(ticks(trades), start, end, HOUR, Decimal("0.10"), first, now)
    assert [Decimal(b.cvd) for b in response.bars] == [b.cvd for b in expected]


async def test_several_instruments_add_up(stack: Stack) -> None:
    now = int(time.time() * 1000)
    day = now - now % DAY - DAY
    rng = random.Random(3)
    a = random_trades(rng, 1, day, day + HOUR, 500)
    b = random_trades(rng, 1, day, day + HOUR, 500)
    await stack.storage.write(BTC, [a])
    await stack.storage.write(BTC_BYBIT, [b])
    response = await stack.stub.GetOrderFlow(
        request([BTC, BTC_BYBIT], day, day + HOUR, "15m", include_rows=True)
    )
    expected = oracle_bars(
        ticks(a) + ticks(b), day, day + HOUR, 15 * MIN, Decimal("0.10"), lambda t: utc_day(t)[0], now
    )
    for got, want in zip(response.bars, expected, strict=True):
        assert (Decimal(got.buy_volume), Decimal(got.sell_volume), Decimal(got.cvd)) == (
            want.buy,
            want.sell,
            want.cvd,
        )
        rows = {Decimal(r.price): [Decimal(r.buy_volume), Decimal(r.sell_volume)] for r in got.rows}
        assert {p: v for p, v in rows.items() if v != [0, 0]} == want.rows


async def test_large_trades(stack: Stack) -> None:
    now = int(time.time() * 1000)
    day = now - now % DAY - DAY
    trades = [
        trade(1, "500.00", "1", True, day + 1000),
        trade(2, "500.10", "10", False, day + 2000),
        trade(3, "500.20", "25", True, day + MIN + 5),
        trade(4, "500.20", "9.99", True, day + MIN + 6),
    ]
    await stack.storage.write(BTC, [trades])
    response = await stack.stub.GetOrderFlow(request([BTC], day, day + 2 * MIN, large_trade_min_size="10"))
    assert [(b.large_trades, b.large_trade_volume) for b in response.bars] == [(1, "10"), (1, "25")]
    assert [(t.trade_id, t.size) for t in response.large_trades] == [("2", "10"), ("3", "25")]


async def test_zone_at_the_profile_edge_and_ties(stack: Stack) -> None:
    """Buys stacked at the lowest rows (nothing below: opposite 0), one row at exactly 3x."""
    now = int(time.time() * 1000)
    t0 = now - now % DAY - DAY
    trades = [
        trade(1, "100.00", "1", True, t0 + 1),  # lowest row: buy over a missing row
        trade(2, "100.10", "3", True, t0 + 2),  # 3 >= 3 x sell(100.00) = 0
        trade(3, "100.10", "1", False, t0 + 3),
        trade(4, "100.20", "3", True, t0 + 4),  # 3 >= 3 x sell(100.10) = 3: the tie counts
        trade(5, "100.30", "2", True, t0 + 5),  # 2 < 3 x 0? no: sell(100.20) = 0 -> imbalance
    ]
    await stack.storage.write(BTC, [trades])
    response = await stack.stub.GetOrderFlow(request([BTC], t0, t0 + MIN))
    bar = response.bars[0]
    assert [(i.price, SIDE[i.side], i.ratio) for i in bar.imbalances] == [
        ("100.00", "buy", ""),
        ("100.10", "buy", ""),
        ("100.20", "buy", "3"),
        ("100.30", "buy", ""),
    ]
    zones = [z for z in bar.zones if z.kind == pb.ZONE_KIND_STACKED_IMBALANCE]
    assert [(z.price_low, z.price_high, z.stacked_imbalance.rows) for z in zones] == [("100.00", "100.40", 4)]


def _bad(**fields: object) -> pb.GetOrderFlowRequest:
    base = request([BTC], 1_700_000_000_000, 1_700_000_000_000 + HOUR)
    for name, value in fields.items():
        if name == "parameters":
            base.parameters.CopyFrom(value)  # type: ignore[arg-type]
        elif name in ("instruments", "composites"):
            field = getattr(base, name)
            del field[:]
            field.extend(value)
        else:
            setattr(base, name, value)
    return base


@pytest.mark.parametrize(
    "fields,named",
    [
        (
            {
                "instruments": [
                    common_pb2.Instrument(
                        exchange=common_pb2.EXCHANGE_BINANCE, market=common_pb2.MARKET_SPOT, symbol="DOGEUSDT"
                    )
                ]
            },
            "instruments[0]",
        ),
        ({"instruments": []}, "instruments"),
        ({"composites": ["worst:BTCUSDT"]}, "composites[0]"),
        ({"start_time_ms": 1_700_000_000_000 + HOUR, "end_time_ms": 1_700_000_000_000}, "end_time_ms"),
        ({"end_time_ms": 1_700_000_000_000 + 400 * DAY}, "end_time_ms"),
        ({"timeframe": "2m"}, "timeframe"),
        (
            {"parameters": pb.OrderFlowParameters(imbalance=pb.ImbalanceParameters(ratio="1"))},
            "parameters.imbalance.ratio",
        ),
        (
            {"parameters": pb.OrderFlowParameters(imbalance=pb.ImbalanceParameters(ratio="0.5"))},
            "parameters.imbalance.ratio",
        ),
        (
            {"parameters": pb.OrderFlowParameters(imbalance=pb.ImbalanceParameters(min_volume="-1"))},
            "parameters.imbalance.min_volume",
        ),
        (
            {"parameters": pb.OrderFlowParameters(large_trade_min_size="-5")},
            "parameters.large_trade_min_size",
        ),
        (
            {"parameters": pb.OrderFlowParameters(absorption=pb.AbsorptionParameters(min_volume="-2"))},
            "parameters.absorption.min_volume",
        ),
        (
            {"parameters": pb.OrderFlowParameters(imbalance=pb.ImbalanceParameters(stacked_min_rows=1))},
            "parameters.imbalance.stacked_min_rows",
        ),
        ({"parameters": pb.OrderFlowParameters(row_size="0.15")}, "parameters.row_size"),
        (
            {
                "parameters": pb.OrderFlowParameters(
                    cvd_anchor=pb.CvdAnchor(
                        kind=pb.CVD_ANCHOR_KIND_SESSION,
                        session=vp_pb.Session(time_zone="Mars/Base", start="09:30", end="16:00"),
                    )
                )
            },
            "parameters.cvd_anchor.session.time_zone",
        ),
        (
            {
                "parameters": pb.OrderFlowParameters(
                    cvd_anchor=pb.CvdAnchor(kind=pb.CVD_ANCHOR_KIND_TIMESTAMP, time_ms=1_800_000_000_000)
                )
            },
            "parameters.cvd_anchor.time_ms",
        ),
        ({"last_bars": 5}, "last_bars"),
    ],
)
async def test_bad_input_names_the_field(stack: Stack, fields: dict[str, object], named: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.GetOrderFlow(_bad(**fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(named + ":"), caught.value.details()


async def test_last_bars(stack: Stack) -> None:
    now = int(time.time() * 1000)
    await stack.storage.write(BTC, [[trade(1, "100.00", "1", True, now - 12 * MIN)]])
    response = await stack.stub.GetOrderFlow(
        pb.GetOrderFlowRequest(instruments=[BTC.to_proto()], timeframe="5m", last_bars=4)
    )
    assert len(response.bars) == 4
    assert response.bars[-1].start_time_ms + 5 * MIN > int(time.time() * 1000)
    assert not response.bars[-1].closed and response.bars[0].closed
    assert sum(b.trades for b in response.bars) == 1


async def test_cli_renders_a_real_response(stack: Stack) -> None:
    """`marketdata flow`'s JSON and table from a real answer (the subprocess path is in test_cli)."""
    now = int(time.time() * 1000)
    t0 = now - now % DAY - DAY
    trades = [trade(1, "100.00", "1", True, t0 + 1), trade(2, "100.10", "4", True, t0 + 2)]
    await stack.storage.write(BTC, [trades])
    response = await stack.stub.GetOrderFlow(request([BTC], t0, t0 + 2 * MIN, include_rows=True))
    result = flow_cli.to_json(response)
    first = result["bars"][0]
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        "100.00",
        "100.10",
        "100.00",
        "100.10",
    )
    assert (first["buy"], first["sell"], first["delta"], first["cvd"]) == ("5", "0", "5", "5")
    assert [i["price"] for i in first["imbalances"]] == ["100.00", "100.10"]
    assert result["bars"][1]["open"] == "" and result["bars"][1]["cvd"] == "5"
    text = flow_cli.table(response)
    assert "100.10" in text and "ratio 3" in text
