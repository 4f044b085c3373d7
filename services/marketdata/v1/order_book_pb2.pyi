from marketdata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BookSyncState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOOK_SYNC_STATE_UNSPECIFIED: _ClassVar[BookSyncState]
    BOOK_SYNC_STATE_OFF: _ClassVar[BookSyncState]
    BOOK_SYNC_STATE_SYNCING: _ClassVar[BookSyncState]
    BOOK_SYNC_STATE_SYNCED: _ClassVar[BookSyncState]
    BOOK_SYNC_STATE_RESYNCING: _ClassVar[BookSyncState]
BOOK_SYNC_STATE_UNSPECIFIED: BookSyncState
BOOK_SYNC_STATE_OFF: BookSyncState
BOOK_SYNC_STATE_SYNCING: BookSyncState
BOOK_SYNC_STATE_SYNCED: BookSyncState
BOOK_SYNC_STATE_RESYNCING: BookSyncState

class PriceLevel(_message.Message):
    __slots__ = ("price", "size", "untrusted")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    UNTRUSTED_FIELD_NUMBER: _ClassVar[int]
    price: str
    size: str
    untrusted: bool
    def __init__(self, price: _Optional[str] = ..., size: _Optional[str] = ..., untrusted: _Optional[bool] = ...) -> None: ...

class OrderBookSnapshot(_message.Message):
    __slots__ = ("instrument", "bids", "asks", "update_id", "exchange_time_ms", "receive_time_ns")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    update_id: int
    exchange_time_ms: int
    receive_time_ns: int
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., update_id: _Optional[int] = ..., exchange_time_ms: _Optional[int] = ..., receive_time_ns: _Optional[int] = ...) -> None: ...

class OrderBookSummary(_message.Message):
    __slots__ = ("best_bid", "best_ask", "spread", "mid", "depth_imbalance", "bid_size", "ask_size")
    BEST_BID_FIELD_NUMBER: _ClassVar[int]
    BEST_ASK_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    MID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_IMBALANCE_FIELD_NUMBER: _ClassVar[int]
    BID_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASK_SIZE_FIELD_NUMBER: _ClassVar[int]
    best_bid: PriceLevel
    best_ask: PriceLevel
    spread: str
    mid: str
    depth_imbalance: float
    bid_size: str
    ask_size: str
    def __init__(self, best_bid: _Optional[_Union[PriceLevel, _Mapping]] = ..., best_ask: _Optional[_Union[PriceLevel, _Mapping]] = ..., spread: _Optional[str] = ..., mid: _Optional[str] = ..., depth_imbalance: _Optional[float] = ..., bid_size: _Optional[str] = ..., ask_size: _Optional[str] = ...) -> None: ...
