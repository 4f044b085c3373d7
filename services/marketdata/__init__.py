"""Cloud MarketData: collectors, storage and analytics for crypto market data over gRPC."""
