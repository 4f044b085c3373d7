"""Shared core: configuration, instruments, telemetry, gRPC plumbing and (later) the analytics math."""
