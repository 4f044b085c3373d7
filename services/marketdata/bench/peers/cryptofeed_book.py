"""cryptofeed 2.4.x's own Binance feed applying a recorded depth stream to its order books (run under
the peer virtualenv). Usage: cryptofeed_book.py WS_RECORDING HTTP_RECORDING spot|futures SECONDS REPEATS

The recording is the format of /work/shared/fixtures/recorded (cryptofeed's sample data). Only the
depthUpdate frames are fed, as raw text, to the feed's real `message_handler` (yapic JSON decode with
Decimal floats, `_check_update_id`, `_book`: size 0 deletes the level, any other size sets it, in the
`order_book` C extension, then `book_callback` and one L2_BOOK callback, as any user has). Each pass
first loads every symbol's recorded REST snapshot through the feed's own `_snapshot`, outside the
timed part (our side loads its snapshots untimed too). No network: the symbol table is filled from
the recorded symbols and the feed's HTTP read answers from the recorded snapshots.

Prints one JSON line: level updates applied per second over the best of REPEATS repeats of about
SECONDS / REPEATS each, that repeat's CPU seconds, and each book's top of book at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from cryptofeed.defines import ASK, BID, L2_BOOK  # type: ignore[import-not-found]
from cryptofeed.exchanges import Binance, BinanceFutures  # type: ignore[import-not-found]
from cryptofeed.symbols import Symbols  # type: ignore[import-not-found]
from recording import best_of, load_depth  # type: ignore[import-not-found]  # a sibling: this runs as a file
from window import new_event_loop  # type: ignore[import-not-found]  # a sibling too

QUOTES = ("USDT", "BUSD", "USDC", "BTC", "ETH", "BNB", "EUR")


def build_feed(futures: bool, symbols: list[str], snapshots: dict[str, str], on_book: Any) -> Any:
    feed_class = BinanceFutures if futures else Binance
    entries = []
    for symbol in symbols:
        quote = next(q for q in QUOTES if symbol.endswith(q))
        entry = {"symbol": symbol, "baseAsset": symbol[: -len(quote)], "quoteAsset": quote,
                 "status": "TRADING", "filters": [{"tickSize": "0.00000001"}]}  # fmt: skip
        if futures:
            entry["contractType"] = "PERPETUAL"
        entries.append(entry)
    mapping, info = feed_class._parse_symbol_data({"symbols": entries})
    Symbols.set(feed_class.id, mapping, info)
    feed = feed_class(symbols=list(mapping), channels=[L2_BOOK], callbacks={L2_BOOK: on_book})

    async def read(address: str, *args: Any, **kwargs: Any) -> str:
        symbol = re.search(r"symbol=(\w+)", address)
        assert symbol, address
        return snapshots[symbol[1]]

    feed.http_conn.read = read
    return feed


def main() -> None:
    ws, http, market = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    seconds, repeats = float(sys.argv[4]), int(sys.argv[5])
    frames, snapshots = load_depth(ws, http)
    applied = 0

    async def on_book(book: Any, receipt_timestamp: float) -> None:
        nonlocal applied
        delta = book.delta
        if delta:  # None for the snapshot itself
            applied += len(delta[BID]) + len(delta[ASK])

    feed = build_feed(market == "futures", sorted(snapshots), snapshots, on_book)

    loop = new_event_loop()  # the collector's (cryptofeed runs on the loop it is given)
    asyncio.set_event_loop(loop)

    async def timed_pass() -> tuple[float, float, int]:
        """(wall s, CPU s, level updates) of the diff frames, after the snapshots (untimed)."""
        nonlocal applied
        feed._reset()
        for symbol in snapshots:
            await feed._snapshot(symbol)
        applied = 0
        handler = feed.message_handler
        cpu, started = time.process_time(), time.perf_counter()
        for text in frames:
            await handler(text, None, 0.0)
        return time.perf_counter() - started, time.process_time() - cpu, applied

    def one_pass() -> tuple[float, float, int]:
        return loop.run_until_complete(timed_pass())  # type: ignore[no-any-return]

    total, wall, cpu, passes = best_of(one_pass, seconds, repeats)
    tops = {}
    for symbol, book in feed._l2_book.items():
        bids, asks = book.book.bids, book.book.asks
        tops[feed.std_symbol_to_exchange_symbol(symbol)] = {
            "bid": [str(x) for x in bids.index(0)] if len(bids) else None,
            "ask": [str(x) for x in asks.index(0)] if len(asks) else None,
            "bid_levels": len(bids),
            "ask_levels": len(asks),
        }
    result = {
        "client": "cryptofeed",
        "events": len(frames) * passes,
        "level_updates": total,
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "level_updates_per_s": round(total / wall),
        "passes": passes,
        "tops": tops,
    }

    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
