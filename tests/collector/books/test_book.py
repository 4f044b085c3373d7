"""The local book structure: exact ordering without floats, absolute updates, rollback of bad or
crossing updates, untrusted levels past a truncated snapshot, and a property test against a naive
dict model."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.collector.books.book import BookInputError, OrderBook, spread_and_mid


def test_levels_sort_by_exact_value_whatever_the_decimals() -> None:
    book = OrderBook.from_levels(
        [["0.1", "1"], ["0.10000001", "2"], ["0.09999999", "3"]],
        [["0.2", "1"], ["0.19999999", "2"], ["1", "5"]],
        update_id=7,
    )
    bids, asks = book.levels()
    assert bids == [("0.10000001", "2"), ("0.1", "1"), ("0.09999999", "3")]
    assert asks == [("0.19999999", "2"), ("0.2", "1"), ("1", "5")]
    assert book.update_id == 7 and not book.crossed()


def test_same_price_written_differently_is_one_level_and_keeps_the_latest_text() -> None:
    book = OrderBook.from_levels([["65000.10", "1.0"]], [["65001.00", "2"]], update_id=1)
    book.apply([["65000.1000", "3.5"]], [], [])
    assert book.levels()[0] == [("65000.1000", "3.5")]
    book.apply([["65000.1", "0.000"]], [], [])
    assert book.levels()[0] == []


def test_more_decimals_than_seen_so_far_rescales_the_book() -> None:
    book = OrderBook.from_levels([["100.5", "1"]], [["101", "1"]], update_id=1)
    assert book.scale == 1
    book.apply([["100.55", "2"], ["100.499", "3"]], [], [])
    assert book.scale == 3
    assert book.levels()[0] == [("100.55", "2"), ("100.5", "1"), ("100.499", "3")]


def test_deleting_an_absent_level_is_a_no_op() -> None:
    book = OrderBook.from_levels([["1.00", "1"]], [["2.00", "1"]], update_id=1)
    assert book.apply([["0.50", "0"]], [["3.00", "0.00000000"]], []) == 2
    assert book.levels() == ([("1.00", "1")], [("2.00", "1")])


@pytest.mark.parametrize(
    "level",
    [
        ["1.00", "-1"],
        ["1.00", "abc"],
        ["1.00", "1e3"],
        ["1.00", "NaN"],
        ["-1.00", "1"],
        ["1.00"],
        "1.00",
        [1.0, "1"],
    ],
)
def test_bad_levels_are_refused_and_rolled_back(level: object) -> None:
    book = OrderBook.from_levels([["1.00", "1"], ["0.90", "2"]], [["2.00", "1"]], update_id=1)
    before = book.levels()
    undo: list = []  # type: ignore[type-arg]
    with pytest.raises(BookInputError):
        book.apply([["0.95", "4"], ["1.00", "0"], level], [], undo)
    book.rollback(undo)
    assert book.levels() == before


def test_crossing_is_detected_and_rolled_back() -> None:
    book = OrderBook.from_levels([["99", "1"]], [["100", "1"], ["101", "2"]], update_id=1)
    undo: list = []  # type: ignore[type-arg]
    book.apply([["100", "5"]], [["100", "0"]], undo)  # the ask left and a bid took its price: fine
    assert not book.crossed()
    undo.clear()
    before = book.levels()
    book.apply([["101", "1"]], [], undo)  # a bid at the best ask
    assert book.crossed()
    book.rollback(undo)
    assert book.levels() == before and not book.crossed()


def test_levels_past_a_truncated_snapshot_are_untrusted() -> None:
    bids = [[f"{100 - n}.0", "1"] for n in range(5)]  # 100 .. 96: the snapshot's limit was 5
    asks = [[f"{101 + n}.0", "1"] for n in range(3)]  # fewer than the limit: the whole side
    book = OrderBook.from_levels(bids, asks, update_id=1, limit=5)
    book.apply([["95.5", "7"], ["97.5", "2"]], [["110.0", "4"]], [])
    top_bids, top_asks = book.top(10)
    assert [(p, u) for p, _, u in top_bids] == [
        ("100.0", False), ("99.0", False), ("98.0", False), ("97.5", False), ("97.0", False),
        ("96.0", False), ("95.5", True),
    ]  # fmt: skip
    assert all(not u for _, _, u in top_asks)


def test_spread_and_mid_are_exact_decimals() -> None:
    assert spread_and_mid("0.35210000", "0.35250000") == ("0.00040000", "0.35230000")
    assert spread_and_mid("65000.1", "65000.2") == ("0.1", "65000.15")


prices = st.integers(min_value=1, max_value=400)
sizes = st.integers(min_value=0, max_value=5)


def _text(units: int, decimals: int) -> str:
    value = Decimal(units).scaleb(-2)
    return f"{value:.{decimals}f}"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), prices, sizes, st.integers(min_value=2, max_value=5)),
        min_size=1,
        max_size=200,
    )
)
def test_matches_a_naive_model(updates: list[tuple[bool, int, int, int]]) -> None:
    """Random absolute updates (with prices written with 2..5 decimals) give the naive model's book."""
    book = OrderBook(scale=2)
    model: dict[bool, dict[Decimal, tuple[str, str]]] = {True: {}, False: {}}
    for is_bid, price, size, decimals in updates:
        level = [_text(price, decimals), str(size)]
        book.apply([level] if is_bid else [], [] if is_bid else [level], None)
        if size == 0:
            model[is_bid].pop(Decimal(level[0]), None)
        else:
            model[is_bid][Decimal(level[0])] = (level[0], level[1])
    bids, asks = book.levels()
    assert bids == [model[True][k] for k in sorted(model[True], reverse=True)]
    assert asks == [model[False][k] for k in sorted(model[False])]
