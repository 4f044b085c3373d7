"""The capture format shared with the recorder, and reading the public recording formats."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from marketdata.core.capture import CAPTURE_FORMAT, CaptureWriter, RecordedFrame, read_frames
from marketdata.core.instruments import InstrumentId, MarketKey


def test_written_frames_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    frames = [
        (10, MarketKey.BINANCE_SPOT, '{"stream":"btcusdt@trade","data":{"e":"trade","p":"65000.10000000"}}'),
        (20, MarketKey.BYBIT_LINEAR, '{"topic":"publicTrade.BTCUSDT","data":[{"v":"0.020"}]}'),
        (30, MarketKey.BINANCE_FUTURES, 'not json at all, "quoted" \\ and unicode \u00e9\n'),
    ]
    instruments = [InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")]
    with CaptureWriter(path, instruments, started_ns=5, buffer_bytes=64) as writer:
        for receive_ns, market, text in frames:
            writer.write(receive_ns, market, text)
        assert writer.frames_written == 3
    lines = path.read_bytes().splitlines()
    assert orjson.loads(lines[0]) == {
        "format": CAPTURE_FORMAT,
        "version": 1,
        "started_ns": 5,
        "instruments": ["binance-spot:BTCUSDT"],
    }
    assert orjson.loads(lines[1]) == {"t": 10, "m": "binance-spot", "f": frames[0][2]}
    assert list(read_frames(path)) == [RecordedFrame(*f) for f in frames]
    assert [f.receive_ns for f in read_frames(path, MarketKey.BYBIT_LINEAR)] == [20]


def test_public_recordings_are_read_with_their_market(recorded_dir: Path) -> None:
    spot = list(read_frames(recorded_dir / "cryptofeed-BINANCE.ws.1.0"))
    assert len(spot) == 265 and {f.market for f in spot} == {MarketKey.BINANCE_SPOT}
    assert spot[0].receive_ns == 1633998512063356900  # exact decimal seconds, not a float
    assert spot[0].text.startswith('{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate"')
    futures = list(read_frames(recorded_dir / "cryptofeed-BINANCE_FUTURES.ws.1.0"))
    assert len(futures) == 1535 and {f.market for f in futures} == {MarketKey.BINANCE_FUTURES}
    bybit = list(read_frames(recorded_dir / "bybit-v5-linear-2025-09-25.jsonl"))
    assert [f.receive_ns for f in bybit] == [1758841137168651303, 1758841138293664629, 1758845432767124368]
    assert {f.market for f in bybit} == {MarketKey.BYBIT_LINEAR}


def test_the_market_of_a_plain_ns_file_comes_from_its_name_or_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "frames.jsonl"
    path.write_text('1758841137168651303 {"topic":"publicTrade.BTCUSDT"}\n')
    with pytest.raises(ValueError, match="cannot tell the market from the file name"):
        list(read_frames(path))
    assert next(read_frames(path, MarketKey.BYBIT_SPOT)).market == MarketKey.BYBIT_SPOT
    named = tmp_path / "bybit-spot-day.jsonl"
    named.write_text(path.read_text())
    assert next(read_frames(named)).market == MarketKey.BYBIT_SPOT


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hello world\n", ":1: unknown capture format"),
        ('{"format":"other"}\n', ":1: first line is not a marketdata-capture header"),
        ('{"format":"marketdata-capture","version":9}\n', ":1: capture version 9 is not supported"),
        (
            '{"format":"marketdata-capture","version":1}\n{"t":1,"m":"binance-spot","f":"x"}\n{"t":"soon"}\n',
            ":3: field 't' must be the receive time in ns",
        ),
        (
            '{"format":"marketdata-capture","version":1}\n\n{"t":1,"m":"kraken","f":"x"}\n',
            ":3: unknown market 'kraken'",
        ),
        ('{"format":"marketdata-capture","version":1}\n{"t":1,"m":"bybit-spot"}\n', ":2: field 'f' must be"),
        ('{"format":"marketdata-capture","version":1}\n{broken\n', ":2: not valid JSON"),
        (
            "wss://stream.binance.com:9443/ws <-> 1.5\n1.6 no separator\n",
            ":2: expected '<receive_ts_seconds>: <frame>'",
        ),
        ("wss://stream.binance.com:9443/ws <-> 1.5\nsoon: {}\n", ":2: receive time 'soon' is not a number"),
        ("wss://example.com/ws <-> 1.5\n", ":1: cannot tell the market from 'wss://example.com/ws'"),
        ("https://api.binance.com/api/v3/depth -> 1.5: {}\n", ":1: this is a REST capture"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.capture"
    path.write_text(content)
    with pytest.raises(ValueError) as caught:
        list(read_frames(path))
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_rest_capture_fixture_is_refused(recorded_dir: Path) -> None:
    with pytest.raises(ValueError, match="REST capture"):
        list(read_frames(recorded_dir / "cryptofeed-BINANCE.http.0.0"))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot open"):
        list(read_frames(tmp_path / "absent"))
    empty = tmp_path / "empty"
    empty.write_text("")
    assert list(read_frames(empty)) == []
