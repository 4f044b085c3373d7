"""Tool errors an agent can act on: bad arguments name the argument and what is accepted; a failing
backend says which service, what happened and what to try. Never a stack trace (docs/mcp.md, Errors).
"""

from __future__ import annotations

import logging

import grpc
from fastmcp.exceptions import ToolError
from pydantic import ValidationError as PydanticValidationError


class InvalidArgument(ToolError):
    """The caller's mistake (outcome invalid_argument): the message names the argument."""

    def __init__(self, message: str) -> None:
        super().__init__(message, log_level=logging.INFO)


class BackendError(ToolError):
    """A service the bridge calls failed or timed out (outcome error)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, log_level=logging.WARNING)


# Status codes that mean "the request was wrong", whose details the services word for a caller.
_CALLER_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.NOT_FOUND}
)


def from_rpc_error(error: grpc.aio.AioRpcError, service: str, timeout_s: float) -> ToolError:
    """Map a failed gRPC call to the tool error the agent sees."""
    code = error.code()
    details = (error.details() or "").strip()
    if code in _CALLER_CODES:
        return InvalidArgument(details or f"the {service} service refused the request ({code.name})")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendError(
            f"the {service} service did not answer within {timeout_s:g} s; retry, or ask for a shorter "
            "range or fewer instruments"
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        reason = f" ({details})" if details else ""
        return BackendError(f"the {service} service is unavailable{reason}; retry in a few seconds")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return InvalidArgument(f"{details or 'the answer is too large'}; narrow the request")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return BackendError(details or f"the {service} service cannot answer this now")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return BackendError(f"the {service} service does not offer this call (an older version?)")
    return BackendError(f"the {service} service failed: {code.name}{': ' + details if details else ''}")


def describe_validation_error(tool: str, error: PydanticValidationError) -> str:
    """`get_market_depth: depth: Input should be 5, 10, 20, 50 or 200 (got 7)`: one line per problem,
    without pydantic's type codes and documentation links."""
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        message = item["msg"]
        if item["type"] in ("missing", "missing_argument"):
            message = "required"
        elif item["type"] == "extra_forbidden":
            message = "unknown argument"
        elif "input" in item:
            got = repr(item["input"])
            message += f" (got {got[:60] + '...' if len(got) > 60 else got})"
        problems.append(f"{where}: {message}")
    return f"{tool}: invalid arguments: " + "; ".join(problems)
