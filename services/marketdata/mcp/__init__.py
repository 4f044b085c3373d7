"""The MCP bridge: market-data tools for AI agents over stdio and authenticated streamable HTTP.

It holds no market logic: it validates arguments, calls the gRPC services and shapes their answers
(docs/mcp.md). Kept import-light: core/config imports `marketdata.mcp.access` for its settings.
"""
