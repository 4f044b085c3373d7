"""Generated protobuf and gRPC code for package marketdata.v1 (see scripts/genproto.py)."""
