"""The bare loop: receive the replay exchange's trade frames and decode their JSON, nothing else; the
practical ceiling of a Python consumer on this machine. Usage: bare_trades.py WS_URL binance|bybit
WARMUP_S SECONDS (run with the project's interpreter: aiohttp and orjson)."""

from __future__ import annotations

import asyncio
import ssl
import sys

import aiohttp
import orjson
from window import TradeWindow  # this directory: the scripts run as files, under another interpreter


async def run(url: str, exchange: str, warmup: float, seconds: float) -> TradeWindow:
    window = TradeWindow("bare loop", warmup, seconds)
    if exchange == "binance":
        url, subscribe, per_frame = f"{url}/ws/btcusdt@trade", None, False
    else:
        url, subscribe, per_frame = (
            f"{url}/v5/public/linear",
            {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]},
            True,
        )
    context = ssl.create_default_context()  # trusts SSL_CERT_FILE
    async with aiohttp.ClientSession() as session, session.ws_connect(url, ssl=context, max_msg_size=0) as ws:
        if subscribe is not None:
            await ws.send_json(subscribe)
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = orjson.loads(message.data)
            count = len(frame.get("data", ())) if per_frame and "topic" in frame else (0 if per_frame else 1)
            if count and window.add(count):
                break
    return window


def main() -> None:
    window = asyncio.run(run(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
    print(window.report(), flush=True)


if __name__ == "__main__":
    main()
