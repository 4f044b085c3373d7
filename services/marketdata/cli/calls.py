"""The frame every CLI command that asks a service shares: load the settings, run one gRPC
conversation, and end with a one-line reason and an exit code when either fails.

Exit codes: 2 when what was asked is wrong (configuration, or the service answered INVALID_ARGUMENT),
1 when the service failed or could not be reached. `cli.main` prints a CommandError and returns its code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc

from marketdata.core.config import ConfigError, Settings, load_settings

T = TypeVar("T")


class CommandError(Exception):
    """Ends a command: the message goes to stderr and `code` becomes the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def command_settings(command: str) -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise CommandError(f"{command}: configuration error: {exc}", 2) from None


def call(command: str, coro: Coroutine[Any, Any, T], where: str = "") -> T:
    """Run `coro` (one conversation with a service) to its end; a gRPC error becomes a CommandError
    naming `where` (the service's address or name) when given, the status code and the details."""
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as exc:
        code = 2 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 1
        at = f"{where}: " if where else ""
        raise CommandError(f"{command}: {at}{exc.code().name}: {exc.details()}", code) from None
