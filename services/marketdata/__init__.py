"""Cloud MarketData: collectors, storage and analytics for crypto market data over gRPC."""

import os

# grpc's EventEngine I/O for clients, listeners and other endpoints (on by default in grpcio 1.85)
# wakes a pool of threads in every process for every read and write. With six services on two cores
# those wake-ups preempted the services' event loops: in `marketdata bench e2e` at 10k trades/s,
# turning them off took the processes from 1.10 to 1.00 cores and StreamTrades / StreamOrderFlow p99
# from 4.9-5.5 / 7.0-7.5 ms to 4.1-4.3 / 5.9-6.5 ms (docs/benchmarks.md, "End to end"). grpc then
# uses its previous I/O layer. Set before grpc is first used (this runs before any of our modules
# import it); a GRPC_EXPERIMENTS already in the environment is left as it is.
os.environ.setdefault(
    "GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints"
)
