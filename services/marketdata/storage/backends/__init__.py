"""Storage backends, chosen by MARKETDATA_STORAGE_URI."""

from __future__ import annotations

from pathlib import Path

from marketdata.core.config import Settings
from marketdata.storage.backends.base import Backend


def storage_uri(settings: Settings) -> str:
    """The configured URI, or the embedded store in the data directory."""
    if settings.storage_uri:
        return settings.storage_uri
    return f"sqlite:///{Path(settings.data_dir) / 'marketdata.db'}"


def describe(uri: str) -> str:
    """The URI without credentials, for logs."""
    scheme, sep, rest = uri.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def open_backend(settings: Settings, uri: str | None = None) -> Backend:
    """The backend for a URI (not yet opened: call .open() on the writer thread)."""
    uri = uri or storage_uri(settings)
    if uri.startswith("sqlite:///"):
        from marketdata.storage.backends.sqlite import SqliteBackend

        return SqliteBackend(
            uri.removeprefix("sqlite:///"),
            synchronous=settings.storage_sqlite_synchronous,
            max_bytes=settings.storage_sqlite_max_mb * 1024 * 1024,
        )
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        from marketdata.storage.backends.mongodb import MongoBackend

        return MongoBackend(
            uri,
            trades_ttl_s=settings.storage_retention_trades,
            snapshots_ttl_s=settings.storage_retention_book_snapshots,
        )
    raise ValueError(f"unsupported storage URI {describe(uri)!r}: use sqlite:///PATH or mongodb://...")
