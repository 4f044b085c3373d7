"""Local order books: exact levels (book.py), the exchanges' sync procedures (sync.py), throttled
REST snapshots (snapshots.py), the manager that routes depth frames and serves readers (manager.py),
views (views.py) and metrics (metrics.py). See docs/order-books.md."""

from marketdata.collector.books.book import BookInputError, OrderBook
from marketdata.collector.books.manager import BookManager, BookUnavailable
from marketdata.collector.books.sync import REASONS, BinanceSync, BookSync, BybitSync

__all__ = [
    "REASONS",
    "BinanceSync",
    "BookInputError",
    "BookManager",
    "BookSync",
    "BookUnavailable",
    "BybitSync",
    "OrderBook",
]
