"""Peer collectors measured beside ours in one run (`marketdata bench collector --peers`).

cryptofeed and ccxt are not dependencies of the project: `environment.py` installs pinned versions
into a separate virtualenv, and the client scripts here (`cryptofeed_trades.py`, `ccxt_trades.py`) run
under that interpreter, pointed at the replay exchange over TLS (both refuse plain ws://). Each script
counts the trades its library hands to a callback and prints one JSON line; `bare_trades.py` is the
floor's other side: a loop that only receives frames and decodes their JSON.
"""
