"""The tools, one module per area; each has `register(mcp, backends, ...)`."""
