"""The bridge's Prometheus series (the chart's alert and docs/deploy.md rely on these names).

`marketdata_mcp_tool_calls_total{tool,outcome}`: outcome is ok, error (a backend failed or timed out),
invalid_argument (the caller's mistake) or rate_limited (refused with HTTP 429 before running).
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram

from marketdata.core.metrics import create_registry


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    INVALID_ARGUMENT = "invalid_argument"
    RATE_LIMITED = "rate_limited"


# Tool-call latency as the agent sees it, minus the network: 1 ms to 60 s (the stream tool's window).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class BridgeMetrics:
    def __init__(self, *, process_metrics: bool = True, known_tools: frozenset[str] = frozenset()) -> None:
        self.registry: CollectorRegistry = create_registry("mcp", process_metrics=process_metrics)
        self.known_tools = known_tools
        self.tool_calls = Counter(
            "marketdata_mcp_tool_calls",
            "MCP tool calls by tool and outcome (ok, error, invalid_argument, rate_limited).",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.tool_seconds = Histogram(
            "marketdata_mcp_tool_call_duration_seconds",
            "Time to answer an MCP tool call (the bridge's share plus the gRPC calls it makes).",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.unauthorized = Counter(
            "marketdata_mcp_http_unauthorized",
            "HTTP requests refused with 401, by reason (missing, invalid or expired token).",
            ["reason"],
            registry=self.registry,
        )

    def tool_label(self, name: str) -> str:
        """Unknown names (a caller's typo) share one label, so callers cannot grow the series."""
        return name if name in self.known_tools else "unknown"

    def count(self, tool: str, outcome: Outcome, seconds: float | None = None) -> None:
        label = self.tool_label(tool)
        self.tool_calls.labels(label, outcome.value).inc()
        if seconds is not None:
            self.tool_seconds.labels(label).observe(seconds)
