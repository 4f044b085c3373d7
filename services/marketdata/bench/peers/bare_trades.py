"""The bare loop: receive the replay exchange's trade frames and decode their JSON, nothing else; the
practical ceiling of a Python consumer on this machine. Usage: bare_trades.py WS_URL binance|bybit
WARMUP_S SECONDS (run with the project's interpreter: aiohttp and orjson)."""

from __future__ import annotations

import asyncio
import ssl
import sys

import aiohttp
import orjson
from window import (  # this directory: the scripts run as files, under another interpreter
    TradeWindow,
    new_event_loop,
)


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
            if not per_frame:
                done = window.add(1, frame["t"])
            elif (rows := frame.get("data")) and "topic" in frame:
                # the firehose's Bybit `seq` is consecutive, so it shows loss and duplicates
                done = window.add(len(rows), rows[0]["seq"], rows[-1]["seq"])
            else:
                continue
            if done:
                break
    return window


def main() -> None:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        window = runner.run(run(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
    print(window.report(), flush=True)


if __name__ == "__main__":
    main()
