"""`marketdata bench book`'s side by side with cryptofeed: both clients take the same recorded Binance
frames to the same books, and the table says why a client has no figure. No figure is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketdata.bench import book
from tests.collector.books.reconstruct import FUTURES_HTTP, FUTURES_WS, SPOT_HTTP, SPOT_WS, load, reconstruct

PEER_PYTHON = Path.home() / ".cache" / "marketdata" / "bench-peers" / "bin" / "python"
RECORDINGS = {"spot": (SPOT_WS, SPOT_HTTP), "futures": (FUTURES_WS, FUTURES_HTTP)}


@pytest.mark.parametrize("market", ["spot", "futures"])
def test_ours_ends_at_the_recorded_books(market: str, recorded_dir: Path) -> None:
    ours = book.apply_recorded(market, recorded_dir, seconds=0.001, repeats=1)
    assert not ours.error and ours.level_updates > 0 and ours.passes == 1
    recording = load(*RECORDINGS[market])
    assert set(ours.tops) == set(recording.snapshots)
    for symbol, (_, snapshot) in recording.snapshots.items():
        bids, asks, _ = reconstruct(snapshot, recording.events[symbol], market == "futures")
        top = ours.tops[symbol]
        assert (top["bid"], top["ask"]) == (list(bids[0]), list(asks[0]))
        assert (top["bid_levels"], top["ask_levels"]) == (len(bids), len(asks))


@pytest.mark.timeout(300)  # cryptofeed starts in its own interpreter; slow on a busy machine
@pytest.mark.skipif(not PEER_PYTHON.exists(), reason="no peer virtualenv (marketdata bench book --peers)")
def test_cryptofeed_applies_the_same_updates_to_the_same_books(recorded_dir: Path) -> None:
    ours = book.apply_recorded("spot", recorded_dir, seconds=0.001, repeats=1)
    theirs = book.apply_recorded_cryptofeed("spot", PEER_PYTHON, "", recorded_dir, seconds=0.001, repeats=1)
    assert not theirs.error, theirs.error
    assert theirs.level_updates == ours.level_updates
    # cryptofeed keeps Decimal keys: the same levels, written as the exchange sent them
    assert theirs.tops == ours.tops
    lines = book.peer_table([ours, theirs])
    assert "x" in lines[-1].split()[-1]  # the ratio, ours / cryptofeed


def test_a_missing_peer_virtualenv_is_said_in_its_row(recorded_dir: Path) -> None:
    rows = book.side_by_side(["spot"], None, "no peer virtualenv at /nowhere: run with --peers", 0.001, 1)
    assert [row.client for row in rows] == [book.OURS, book.CRYPTOFEED]
    table = "\n".join(book.peer_table(rows))
    assert "no peer virtualenv at /nowhere: run with --peers" in table
    assert rows[0].level_updates > 0
