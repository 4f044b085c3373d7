"""What readers get of a book: the top levels as protos, with exact derived figures."""

from __future__ import annotations

from marketdata.collector.books.book import OrderBook, plain, spread_and_mid, total
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2, order_book_pb2

PriceLevel = order_book_pb2.PriceLevel
DEPTHS = (5, 10, 20, 50, 200)
DEFAULT_DEPTH = 20


def snapshot(
    instrument: common_pb2.Instrument, book: OrderBook, depth: int
) -> order_book_pb2.OrderBookSnapshot:
    """The top `depth` levels per side, best first; levels outside the REST snapshot's range are
    flagged untrusted."""
    bids, asks = book.top(depth)
    return order_book_pb2.OrderBookSnapshot(
        instrument=instrument,
        bids=[PriceLevel(price=p, size=s, untrusted=u) for p, s, u in bids],
        asks=[PriceLevel(price=p, size=s, untrusted=u) for p, s, u in asks],
        update_id=book.update_id,
        exchange_time_ms=book.exchange_time_ms,
        receive_time_ns=book.receive_ns,
    )


def summary(book_proto: order_book_pb2.OrderBookSnapshot) -> order_book_pb2.OrderBookSummary:
    bids, asks = book_proto.bids, book_proto.asks
    out = order_book_pb2.OrderBookSummary()
    bid_size = total([level.size for level in bids])
    ask_size = total([level.size for level in asks])
    out.bid_size = plain(bid_size)
    out.ask_size = plain(ask_size)
    both = bid_size + ask_size
    if both:
        out.depth_imbalance = float((bid_size - ask_size) / both)
    if bids:
        out.best_bid.CopyFrom(bids[0])
    if asks:
        out.best_ask.CopyFrom(asks[0])
    if bids and asks:
        out.spread, out.mid = spread_and_mid(bids[0].price, asks[0].price)
    return out


def view(
    instrument: common_pb2.Instrument,
    book: OrderBook,
    depth: int,
    *,
    state: int,
    now_ns: int,
    resyncs: int,
    last_reason: str,
) -> collector_pb2.OrderBookView:
    top = snapshot(instrument, book, depth)
    return collector_pb2.OrderBookView(
        book=top,
        summary=summary(top),
        state=state,  # type: ignore[arg-type]
        age_ms=max(0, (now_ns - book.receive_ns) // 1_000_000) if book.receive_ns else -1,
        depth=depth,
        resyncs=resyncs,
        last_resync_reason=last_reason,
    )
