from marketdata.v1 import common_pb2 as _common_pb2
from marketdata.v1 import order_book_pb2 as _order_book_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEED_STATE_UNSPECIFIED: _ClassVar[FeedState]
    FEED_STATE_CONNECTING: _ClassVar[FeedState]
    FEED_STATE_CONNECTED: _ClassVar[FeedState]
    FEED_STATE_RECONNECTING: _ClassVar[FeedState]
    FEED_STATE_STOPPED: _ClassVar[FeedState]
FEED_STATE_UNSPECIFIED: FeedState
FEED_STATE_CONNECTING: FeedState
FEED_STATE_CONNECTED: FeedState
FEED_STATE_RECONNECTING: FeedState
FEED_STATE_STOPPED: FeedState

class StreamTradesRequest(_message.Message):
    __slots__ = ("instruments", "composites")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITES_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    composites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., composites: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamTradesResponse(_message.Message):
    __slots__ = ("batch", "failover")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    batch: _common_pb2.TradeBatch
    failover: Failover
    def __init__(self, batch: _Optional[_Union[_common_pb2.TradeBatch, _Mapping]] = ..., failover: _Optional[_Union[Failover, _Mapping]] = ...) -> None: ...

class Failover(_message.Message):
    __slots__ = ("composite", "selected", "switches")
    COMPOSITE_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    SWITCHES_FIELD_NUMBER: _ClassVar[int]
    composite: str
    selected: _common_pb2.Instrument
    switches: _containers.RepeatedCompositeFieldContainer[FailoverSwitch]
    def __init__(self, composite: _Optional[str] = ..., selected: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., switches: _Optional[_Iterable[_Union[FailoverSwitch, _Mapping]]] = ...) -> None: ...

class FailoverSwitch(_message.Message):
    __slots__ = ("time_ns", "from_feed", "to_feed", "reason")
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    FROM_FEED_FIELD_NUMBER: _ClassVar[int]
    TO_FEED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    from_feed: str
    to_feed: str
    reason: str
    def __init__(self, time_ns: _Optional[int] = ..., from_feed: _Optional[str] = ..., to_feed: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetFeedStatusRequest(_message.Message):
    __slots__ = ("feeds",)
    FEEDS_FIELD_NUMBER: _ClassVar[int]
    feeds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, feeds: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFeedStatusResponse(_message.Message):
    __slots__ = ("feeds", "failovers")
    FEEDS_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    feeds: _containers.RepeatedCompositeFieldContainer[FeedStatus]
    failovers: _containers.RepeatedCompositeFieldContainer[Failover]
    def __init__(self, feeds: _Optional[_Iterable[_Union[FeedStatus, _Mapping]]] = ..., failovers: _Optional[_Iterable[_Union[Failover, _Mapping]]] = ...) -> None: ...

class FeedStatus(_message.Message):
    __slots__ = ("feed", "exchange", "market", "state", "connections", "last_message_age_ms", "messages", "bytes", "trades", "parse_errors", "reconnects", "rotations", "gaps_detected", "gaps_repaired", "gaps_unrepaired", "duplicates", "backfilled_trades", "last_error", "instruments", "recent_gaps", "books", "books_synced", "book_resyncs", "book_invalid_frames", "health")
    FEED_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    MARKET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    PARSE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    GAPS_DETECTED_FIELD_NUMBER: _ClassVar[int]
    GAPS_REPAIRED_FIELD_NUMBER: _ClassVar[int]
    GAPS_UNREPAIRED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    BACKFILLED_TRADES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    RECENT_GAPS_FIELD_NUMBER: _ClassVar[int]
    BOOKS_FIELD_NUMBER: _ClassVar[int]
    BOOKS_SYNCED_FIELD_NUMBER: _ClassVar[int]
    BOOK_RESYNCS_FIELD_NUMBER: _ClassVar[int]
    BOOK_INVALID_FRAMES_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    feed: str
    exchange: _common_pb2.Exchange
    market: _common_pb2.Market
    state: FeedState
    connections: int
    last_message_age_ms: int
    messages: int
    bytes: int
    trades: int
    parse_errors: int
    reconnects: int
    rotations: int
    gaps_detected: int
    gaps_repaired: int
    gaps_unrepaired: int
    duplicates: int
    backfilled_trades: int
    last_error: str
    instruments: _containers.RepeatedCompositeFieldContainer[InstrumentStatus]
    recent_gaps: _containers.RepeatedCompositeFieldContainer[_common_pb2.TradeGap]
    books: int
    books_synced: int
    book_resyncs: int
    book_invalid_frames: int
    health: FeedHealth
    def __init__(self, feed: _Optional[str] = ..., exchange: _Optional[_Union[_common_pb2.Exchange, str]] = ..., market: _Optional[_Union[_common_pb2.Market, str]] = ..., state: _Optional[_Union[FeedState, str]] = ..., connections: _Optional[int] = ..., last_message_age_ms: _Optional[int] = ..., messages: _Optional[int] = ..., bytes: _Optional[int] = ..., trades: _Optional[int] = ..., parse_errors: _Optional[int] = ..., reconnects: _Optional[int] = ..., rotations: _Optional[int] = ..., gaps_detected: _Optional[int] = ..., gaps_repaired: _Optional[int] = ..., gaps_unrepaired: _Optional[int] = ..., duplicates: _Optional[int] = ..., backfilled_trades: _Optional[int] = ..., last_error: _Optional[str] = ..., instruments: _Optional[_Iterable[_Union[InstrumentStatus, _Mapping]]] = ..., recent_gaps: _Optional[_Iterable[_Union[_common_pb2.TradeGap, _Mapping]]] = ..., books: _Optional[int] = ..., books_synced: _Optional[int] = ..., book_resyncs: _Optional[int] = ..., book_invalid_frames: _Optional[int] = ..., health: _Optional[_Union[FeedHealth, _Mapping]] = ...) -> None: ...

class FeedHealth(_message.Message):
    __slots__ = ("score", "reason", "message_rate", "normal_rate", "last_message_age_ms", "window_reconnects", "window_gaps", "window_unrepaired_gaps", "window_book_resyncs", "latency_p50_ms", "latency_p99_ms", "clock_skew_ms", "circuits", "divergences", "penalties")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_RATE_FIELD_NUMBER: _ClassVar[int]
    NORMAL_RATE_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_GAPS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_UNREPAIRED_GAPS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BOOK_RESYNCS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SKEW_MS_FIELD_NUMBER: _ClassVar[int]
    CIRCUITS_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCES_FIELD_NUMBER: _ClassVar[int]
    PENALTIES_FIELD_NUMBER: _ClassVar[int]
    score: int
    reason: str
    message_rate: float
    normal_rate: float
    last_message_age_ms: int
    window_reconnects: int
    window_gaps: int
    window_unrepaired_gaps: int
    window_book_resyncs: int
    latency_p50_ms: float
    latency_p99_ms: float
    clock_skew_ms: float
    circuits: _containers.RepeatedCompositeFieldContainer[CircuitStatus]
    divergences: _containers.RepeatedCompositeFieldContainer[Divergence]
    penalties: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, score: _Optional[int] = ..., reason: _Optional[str] = ..., message_rate: _Optional[float] = ..., normal_rate: _Optional[float] = ..., last_message_age_ms: _Optional[int] = ..., window_reconnects: _Optional[int] = ..., window_gaps: _Optional[int] = ..., window_unrepaired_gaps: _Optional[int] = ..., window_book_resyncs: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., clock_skew_ms: _Optional[float] = ..., circuits: _Optional[_Iterable[_Union[CircuitStatus, _Mapping]]] = ..., divergences: _Optional[_Iterable[_Union[Divergence, _Mapping]]] = ..., penalties: _Optional[_Iterable[str]] = ...) -> None: ...

class CircuitStatus(_message.Message):
    __slots__ = ("call", "state", "reason", "retry_in_ms", "opened", "rejected", "weight_used")
    CALL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_MS_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_USED_FIELD_NUMBER: _ClassVar[int]
    call: str
    state: str
    reason: str
    retry_in_ms: int
    opened: int
    rejected: int
    weight_used: float
    def __init__(self, call: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., retry_in_ms: _Optional[int] = ..., opened: _Optional[int] = ..., rejected: _Optional[int] = ..., weight_used: _Optional[float] = ...) -> None: ...

class Divergence(_message.Message):
    __slots__ = ("symbol", "other_feed", "last_trade_bps", "mid_bps", "flagged", "trade_time_offset_ms")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    OTHER_FEED_FIELD_NUMBER: _ClassVar[int]
    LAST_TRADE_BPS_FIELD_NUMBER: _ClassVar[int]
    MID_BPS_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    TRADE_TIME_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    other_feed: str
    last_trade_bps: float
    mid_bps: float
    flagged: bool
    trade_time_offset_ms: int
    def __init__(self, symbol: _Optional[str] = ..., other_feed: _Optional[str] = ..., last_trade_bps: _Optional[float] = ..., mid_bps: _Optional[float] = ..., flagged: _Optional[bool] = ..., trade_time_offset_ms: _Optional[int] = ...) -> None: ...

class InstrumentStatus(_message.Message):
    __slots__ = ("instrument", "trades", "last_trade_age_ms", "last_trade_id", "last_exchange_time_ms", "repairing", "book_state", "book_resyncs", "book_last_resync_reason", "book_updates", "book_crossed", "book_update_id", "book_age_ms")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    LAST_TRADE_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_EXCHANGE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REPAIRING_FIELD_NUMBER: _ClassVar[int]
    BOOK_STATE_FIELD_NUMBER: _ClassVar[int]
    BOOK_RESYNCS_FIELD_NUMBER: _ClassVar[int]
    BOOK_LAST_RESYNC_REASON_FIELD_NUMBER: _ClassVar[int]
    BOOK_UPDATES_FIELD_NUMBER: _ClassVar[int]
    BOOK_CROSSED_FIELD_NUMBER: _ClassVar[int]
    BOOK_UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOK_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    trades: int
    last_trade_age_ms: int
    last_trade_id: str
    last_exchange_time_ms: int
    repairing: bool
    book_state: _order_book_pb2.BookSyncState
    book_resyncs: int
    book_last_resync_reason: str
    book_updates: int
    book_crossed: int
    book_update_id: int
    book_age_ms: int
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., trades: _Optional[int] = ..., last_trade_age_ms: _Optional[int] = ..., last_trade_id: _Optional[str] = ..., last_exchange_time_ms: _Optional[int] = ..., repairing: _Optional[bool] = ..., book_state: _Optional[_Union[_order_book_pb2.BookSyncState, str]] = ..., book_resyncs: _Optional[int] = ..., book_last_resync_reason: _Optional[str] = ..., book_updates: _Optional[int] = ..., book_crossed: _Optional[int] = ..., book_update_id: _Optional[int] = ..., book_age_ms: _Optional[int] = ...) -> None: ...

class ListInstrumentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ...) -> None: ...

class GetOrderBookRequest(_message.Message):
    __slots__ = ("instrument", "depth", "composite")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    COMPOSITE_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    depth: int
    composite: str
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., depth: _Optional[int] = ..., composite: _Optional[str] = ...) -> None: ...

class GetOrderBookResponse(_message.Message):
    __slots__ = ("view", "failover")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    view: OrderBookView
    failover: Failover
    def __init__(self, view: _Optional[_Union[OrderBookView, _Mapping]] = ..., failover: _Optional[_Union[Failover, _Mapping]] = ...) -> None: ...

class StreamOrderBookRequest(_message.Message):
    __slots__ = ("instrument", "depth", "interval_ms", "composite")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITE_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    depth: int
    interval_ms: int
    composite: str
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., depth: _Optional[int] = ..., interval_ms: _Optional[int] = ..., composite: _Optional[str] = ...) -> None: ...

class StreamOrderBookResponse(_message.Message):
    __slots__ = ("view", "failover")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    view: OrderBookView
    failover: Failover
    def __init__(self, view: _Optional[_Union[OrderBookView, _Mapping]] = ..., failover: _Optional[_Union[Failover, _Mapping]] = ...) -> None: ...

class OrderBookView(_message.Message):
    __slots__ = ("book", "summary", "state", "age_ms", "depth", "resyncs", "last_resync_reason")
    BOOK_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGE_MS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    RESYNCS_FIELD_NUMBER: _ClassVar[int]
    LAST_RESYNC_REASON_FIELD_NUMBER: _ClassVar[int]
    book: _order_book_pb2.OrderBookSnapshot
    summary: _order_book_pb2.OrderBookSummary
    state: _order_book_pb2.BookSyncState
    age_ms: int
    depth: int
    resyncs: int
    last_resync_reason: str
    def __init__(self, book: _Optional[_Union[_order_book_pb2.OrderBookSnapshot, _Mapping]] = ..., summary: _Optional[_Union[_order_book_pb2.OrderBookSummary, _Mapping]] = ..., state: _Optional[_Union[_order_book_pb2.BookSyncState, str]] = ..., age_ms: _Optional[int] = ..., depth: _Optional[int] = ..., resyncs: _Optional[int] = ..., last_resync_reason: _Optional[str] = ...) -> None: ...
