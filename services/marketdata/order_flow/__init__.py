"""The order-flow service: footprint bars, delta and CVD, imbalances, zones and a live stream."""
