"""TradeRun: trades as wire bytes. Joined and cut runs must hold exactly the trades, ids and last
trade of the protobuf messages they were made from, whichever way they were put together."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketdata.collector import trade_runs
from marketdata.collector.trade_runs import TradeRun
from marketdata.v1 import common_pb2


def _trade(n: int, padding: int = 0) -> common_pb2.Trade:
    # padding makes some trades longer than 127 bytes: two-byte length prefixes
    return common_pb2.Trade(
        trade_id=str(n), price=f"{n}.5", size="1", exchange_time_ms=1_000 + n, tick_direction="x" * padding
    )


trade_lists = st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 300)), min_size=1, max_size=40).map(
    lambda rows: [_trade(n, pad) for n, pad in rows]
)


@given(trade_lists, st.integers(1, 45))
def test_joined_and_cut_runs_keep_every_trade_in_order(trades: list[common_pb2.Trade], size: int) -> None:
    cut = max(1, len(trades) // 3)
    parts = [TradeRun.of(trades[:cut], int_ids=True), TradeRun.of(trades[cut:], int_ids=True)]
    parts = [p for p in parts if p.ids]
    joined = TradeRun.join(parts)
    assert joined.wire == common_pb2.TradeBatch(trades=trades).SerializeToString()
    pieces = joined.split(size)
    assert all(1 <= len(p) <= size for p in pieces)
    again = [t for p in pieces for t in TradeRun(p.wire, p.ids, p.last_offset).trades()]
    assert again == trades
    assert [i for p in pieces for i in p.ids] == [int(t.trade_id) for t in trades]
    for piece in pieces:  # each piece's last trade is found from its bytes alone
        fresh = TradeRun(piece.wire, piece.ids, piece.last_offset)
        assert fresh.last() == fresh.trades()[-1]
        assert fresh.last_time_ms == fresh.trades()[-1].exchange_time_ms
        assert fresh.last_trade_id == fresh.trades()[-1].trade_id


def test_wire_offsets_agree_between_the_extension_and_python() -> None:
    trades = [_trade(n, 200 if n % 3 == 0 else 0) for n in range(10)]
    wire = TradeRun.of(trades, int_ids=True).wire
    offsets = [trade_runs._wire_offset_py(wire, n) for n in range(11)]
    assert offsets[-1] == len(wire)
    assert [trade_runs.wire_offset(wire, n) for n in range(11)] == offsets


@pytest.mark.parametrize("wire", [b"\x0a\x01x", b"\x12\x05abc", b"\x12\x80"])
def test_a_broken_wire_is_refused_with_the_reason(wire: bytes) -> None:
    with pytest.raises(ValueError, match="trade wire"):
        trade_runs._wire_offset_py(wire, 1)
