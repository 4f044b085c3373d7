"""The replay exchange: a local server speaking Binance's and Bybit's public WebSocket and REST
protocols, fed by a seeded trade generator and/or recorded files, with fault injection.

    async with running_replay_exchange(ReplayConfig(instruments=...)) as exchange:
        collector_settings(ws_base=exchange.ws_url, rest_base=exchange.http_url)
"""

from marketdata.replay_exchange.config import RecordingSource, ReplayConfig
from marketdata.replay_exchange.faults import FaultSpec, parse_fault, parse_fault_text
from marketdata.replay_exchange.server import ReplayHandle, build_app, running_replay_exchange, serve

__all__ = [
    "FaultSpec",
    "RecordingSource",
    "ReplayConfig",
    "ReplayHandle",
    "build_app",
    "parse_fault",
    "parse_fault_text",
    "running_replay_exchange",
    "serve",
]
