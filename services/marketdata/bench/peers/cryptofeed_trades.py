"""cryptofeed 2.4.x subscribed to one instrument's trades on the replay exchange (run under the peer
virtualenv). Usage: cryptofeed_trades.py HOST:PORT binance|bybit WARMUP_S SECONDS

Endpoints are class attributes in cryptofeed, so they are pointed at the replay exchange before the
feed is built; the trust of its self-signed certificate comes from SSL_CERT_FILE / REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import FUTURES, PERPETUAL, TRADES
from cryptofeed.exchanges import Binance, Bybit
from window import (  # this directory: the scripts run as files, under another interpreter
    TradeWindow,
    new_event_loop,
)


def main() -> None:
    address, exchange, warmup, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    feed_class: Any
    if exchange == "binance":
        Binance.websocket_endpoints = [WebsocketEndpoint(f"wss://{address}")]
        Binance.rest_endpoints = [
            RestEndpoint(
                f"https://{address}",
                routes=Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
            )
        ]
        feed_class, symbol = Binance, "BTC-USDT"
    else:
        Bybit.websocket_endpoints = [
            WebsocketEndpoint(
                f"wss://{address}/v5/public/linear",
                instrument_filter=("TYPE", (FUTURES, PERPETUAL)),
                options={"compression": None},
            )
        ]
        # cryptofeed parses the symbol list only when both categories answer (spot and linear)
        info = "/v5/market/instruments-info?&category={}&status=Trading&limit=1000"
        Bybit.rest_endpoints = [
            RestEndpoint(f"https://{address}", routes=Routes([info.format("linear"), info.format("spot")]))
        ]
        feed_class, symbol = Bybit, "BTC-USDT-PERP"
    window = TradeWindow("cryptofeed", warmup, seconds)
    loop = new_event_loop()  # the collector's (cryptofeed runs on the loop it is given)
    asyncio.set_event_loop(loop)

    # Consecutive ids from the firehose show loss and duplicates: Binance aggregate ids, Bybit `seq`.
    binance = exchange == "binance"

    async def on_trade(trade: Any, receipt_time: float) -> None:
        trade_id = int(trade.id) if binance else int(trade.raw["seq"])
        if window.add(1, trade_id) and loop.is_running():
            loop.stop()

    handler = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    handler.add_feed(feed_class(symbols=[symbol], channels=[TRADES], callbacks={TRADES: on_trade}))
    handler.run(start_loop=False)
    loop.call_later(warmup + seconds + 60, loop.stop)  # never hang when no trade arrives
    loop.run_forever()
    print(window.report(), flush=True)


if __name__ == "__main__":
    main()
