"""Every tool call passes here (a FastMCP middleware): its outcome and latency go to the metrics, and
argument errors are reworded for an agent (which argument, what is accepted) instead of pydantic's
text with type codes and links. Any unexpected exception becomes a plain "internal error" tool error:
the details stay in the log, never in the answer."""

from __future__ import annotations

import logging
import time

import mcp_types as mt
from fastmcp.exceptions import NotFoundError, ToolError, ValidationError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from mcp import MCPError
from pydantic import ValidationError as PydanticValidationError

from marketdata.mcp.errors import BackendError, InvalidArgument, describe_validation_error
from marketdata.mcp.metrics import BridgeMetrics, Outcome

log = logging.getLogger(__name__)
_INTERNAL = "{tool}: internal error in the MCP bridge; retry, and report it if it persists"


class ToolCalls(Middleware):
    def __init__(self, metrics: BridgeMetrics) -> None:
        self.metrics = metrics

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        tool = context.message.name
        began = time.perf_counter()
        outcome = Outcome.ERROR
        try:
            result = await call_next(context)
            outcome = Outcome.ERROR if result.is_error else Outcome.OK
            return result
        except InvalidArgument:
            outcome = Outcome.INVALID_ARGUMENT
            raise
        except ValidationError as exc:
            outcome = Outcome.INVALID_ARGUMENT
            cause = exc.__cause__
            if isinstance(cause, PydanticValidationError):
                raise InvalidArgument(describe_validation_error(tool, cause)) from None
            raise InvalidArgument(f"{tool}: invalid arguments") from None
        except NotFoundError:
            outcome = Outcome.INVALID_ARGUMENT
            raise
        except BackendError:
            raise
        except ToolError as exc:
            # FastMCP's own: a timeout it enforced (masked as "Error calling tool"), or another failure.
            cause = exc.__cause__
            log.warning("tool failed", extra={"tool": tool, "error": str(cause or exc)})
            if isinstance(cause, MCPError) and "timed out" in cause.error.message:
                raise BackendError(f"{tool}: {cause.error.message}; retry, or ask for less data") from None
            if cause is not None:  # a bug of ours that FastMCP masked (its traceback is in the log)
                raise ToolError(_INTERNAL.format(tool=tool)) from None
            raise
        except Exception:
            log.exception("tool raised", extra={"tool": tool})
            raise ToolError(_INTERNAL.format(tool=tool)) from None
        finally:
            self.metrics.count(tool, outcome, time.perf_counter() - began)
