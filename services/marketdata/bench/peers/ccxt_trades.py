"""ccxt's websocket client (ccxt.pro) watching one instrument's trades on the replay exchange (run
under the peer virtualenv). Usage: ccxt_trades.py HOST:PORT binance|bybit WARMUP_S SECONDS CAFILE

ccxt keeps its endpoints in `urls`; they are rewritten to the replay exchange, and its certificate is
trusted through ccxt's own `cafile` option (ccxt does not read SSL_CERT_FILE).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import ccxt.pro as ccxtpro
from window import (  # this directory: the scripts run as files, under another interpreter
    TradeWindow,
    new_event_loop,
)


def _client(address: str, exchange: str, cafile: str) -> tuple[Any, str]:
    if exchange == "binance":
        client = ccxtpro.binance({"cafile": cafile, "options": {"fetchMarkets": {"types": ["spot"]}}})
        api = client.urls["api"]
        for name, url in list(api.items()):
            if isinstance(url, str) and url.startswith("https://api.binance.com"):
                api[name] = url.replace("https://api.binance.com", f"https://{address}")
        api["ws"]["spot"] = f"wss://{address}/ws"
        return client, "BTC/USDT"
    client = ccxtpro.bybit({"cafile": cafile, "options": {"fetchMarkets": {"types": ["linear"]}}})
    api = client.urls["api"]
    for name, url in list(api.items()):
        if isinstance(url, str) and url.startswith("https://"):
            api[name] = f"https://{address}"
    api["ws"]["public"]["linear"] = f"wss://{address}/v5/public/linear"
    return client, "BTC/USDT:USDT"


async def run(address: str, exchange: str, warmup: float, seconds: float, cafile: str) -> TradeWindow:
    client, symbol = _client(address, exchange, cafile)
    window = TradeWindow("ccxt", warmup, seconds)
    try:
        while True:
            # newUpdates (ccxt's default): each call returns only the trades that arrived since the last
            trades = await asyncio.wait_for(client.watch_trades(symbol), timeout=60)
            if not trades:
                continue
            # Consecutive ids from the firehose show loss and duplicates: Binance ids, Bybit `seq`.
            if exchange == "binance":
                first, last = int(trades[0]["id"]), int(trades[-1]["id"])
            else:
                first, last = int(trades[0]["info"]["seq"]), int(trades[-1]["info"]["seq"])
            if window.add(len(trades), first, last):
                return window
    finally:
        await client.close()


def main() -> None:
    address, exchange = sys.argv[1], sys.argv[2]
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        window = runner.run(run(address, exchange, float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]))
    print(window.report(), flush=True)


if __name__ == "__main__":
    main()
