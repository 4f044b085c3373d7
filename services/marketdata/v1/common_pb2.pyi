from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Exchange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXCHANGE_UNSPECIFIED: _ClassVar[Exchange]
    EXCHANGE_BINANCE: _ClassVar[Exchange]
    EXCHANGE_BYBIT: _ClassVar[Exchange]

class Market(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MARKET_UNSPECIFIED: _ClassVar[Market]
    MARKET_SPOT: _ClassVar[Market]
    MARKET_LINEAR: _ClassVar[Market]

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class TradeSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADE_SOURCE_UNSPECIFIED: _ClassVar[TradeSource]
    TRADE_SOURCE_WEBSOCKET: _ClassVar[TradeSource]
    TRADE_SOURCE_REST_BACKFILL: _ClassVar[TradeSource]

class GapKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GAP_KIND_UNSPECIFIED: _ClassVar[GapKind]
    GAP_KIND_TRADE_ID: _ClassVar[GapKind]
    GAP_KIND_RECONNECT_WINDOW: _ClassVar[GapKind]

class GapState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GAP_STATE_UNSPECIFIED: _ClassVar[GapState]
    GAP_STATE_REPAIRING: _ClassVar[GapState]
    GAP_STATE_REPAIRED: _ClassVar[GapState]
    GAP_STATE_UNREPAIRED: _ClassVar[GapState]
EXCHANGE_UNSPECIFIED: Exchange
EXCHANGE_BINANCE: Exchange
EXCHANGE_BYBIT: Exchange
MARKET_UNSPECIFIED: Market
MARKET_SPOT: Market
MARKET_LINEAR: Market
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
TRADE_SOURCE_UNSPECIFIED: TradeSource
TRADE_SOURCE_WEBSOCKET: TradeSource
TRADE_SOURCE_REST_BACKFILL: TradeSource
GAP_KIND_UNSPECIFIED: GapKind
GAP_KIND_TRADE_ID: GapKind
GAP_KIND_RECONNECT_WINDOW: GapKind
GAP_STATE_UNSPECIFIED: GapState
GAP_STATE_REPAIRING: GapState
GAP_STATE_REPAIRED: GapState
GAP_STATE_UNREPAIRED: GapState

class Instrument(_message.Message):
    __slots__ = ("exchange", "market", "symbol")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    MARKET_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    exchange: Exchange
    market: Market
    symbol: str
    def __init__(self, exchange: _Optional[_Union[Exchange, str]] = ..., market: _Optional[_Union[Market, str]] = ..., symbol: _Optional[str] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("trade_id", "price", "size", "side", "exchange_time_ms", "receive_time_ns", "event_time_ms", "source", "execution_type", "block_trade", "rpi", "cross_sequence", "tick_direction", "aggregated")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_TRADE_FIELD_NUMBER: _ClassVar[int]
    RPI_FIELD_NUMBER: _ClassVar[int]
    CROSS_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TICK_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATED_FIELD_NUMBER: _ClassVar[int]
    trade_id: str
    price: str
    size: str
    side: Side
    exchange_time_ms: int
    receive_time_ns: int
    event_time_ms: int
    source: TradeSource
    execution_type: str
    block_trade: bool
    rpi: bool
    cross_sequence: int
    tick_direction: str
    aggregated: bool
    def __init__(self, trade_id: _Optional[str] = ..., price: _Optional[str] = ..., size: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., exchange_time_ms: _Optional[int] = ..., receive_time_ns: _Optional[int] = ..., event_time_ms: _Optional[int] = ..., source: _Optional[_Union[TradeSource, str]] = ..., execution_type: _Optional[str] = ..., block_trade: _Optional[bool] = ..., rpi: _Optional[bool] = ..., cross_sequence: _Optional[int] = ..., tick_direction: _Optional[str] = ..., aggregated: _Optional[bool] = ...) -> None: ...

class TradeBatch(_message.Message):
    __slots__ = ("instrument", "trades")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ...) -> None: ...

class TradeGap(_message.Message):
    __slots__ = ("instrument", "kind", "state", "first_missing_trade_id", "last_missing_trade_id", "from_time_ms", "to_time_ms", "missing_trades", "recovered_trades", "detected_time_ms", "detail")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FIRST_MISSING_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_MISSING_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MISSING_TRADES_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_TRADES_FIELD_NUMBER: _ClassVar[int]
    DETECTED_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    kind: GapKind
    state: GapState
    first_missing_trade_id: str
    last_missing_trade_id: str
    from_time_ms: int
    to_time_ms: int
    missing_trades: int
    recovered_trades: int
    detected_time_ms: int
    detail: str
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., kind: _Optional[_Union[GapKind, str]] = ..., state: _Optional[_Union[GapState, str]] = ..., first_missing_trade_id: _Optional[str] = ..., last_missing_trade_id: _Optional[str] = ..., from_time_ms: _Optional[int] = ..., to_time_ms: _Optional[int] = ..., missing_trades: _Optional[int] = ..., recovered_trades: _Optional[int] = ..., detected_time_ms: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
