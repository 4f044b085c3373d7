from marketdata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetOrderFlowRequest(_message.Message):
    __slots__ = ("instruments", "timeframe", "start_time_ms", "end_time_ms")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    timeframe: str
    start_time_ms: int
    end_time_ms: int
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., timeframe: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ...) -> None: ...

class OrderFlowBar(_message.Message):
    __slots__ = ("start_time_ms", "open", "high", "low", "close", "buy_volume", "sell_volume", "delta", "cvd")
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    BUY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SELL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CVD_FIELD_NUMBER: _ClassVar[int]
    start_time_ms: int
    open: str
    high: str
    low: str
    close: str
    buy_volume: str
    sell_volume: str
    delta: str
    cvd: str
    def __init__(self, start_time_ms: _Optional[int] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., buy_volume: _Optional[str] = ..., sell_volume: _Optional[str] = ..., delta: _Optional[str] = ..., cvd: _Optional[str] = ...) -> None: ...

class GetOrderFlowResponse(_message.Message):
    __slots__ = ("bars",)
    BARS_FIELD_NUMBER: _ClassVar[int]
    bars: _containers.RepeatedCompositeFieldContainer[OrderFlowBar]
    def __init__(self, bars: _Optional[_Iterable[_Union[OrderFlowBar, _Mapping]]] = ...) -> None: ...

class StreamOrderFlowRequest(_message.Message):
    __slots__ = ("instrument", "timeframe")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    timeframe: str
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., timeframe: _Optional[str] = ...) -> None: ...

class StreamOrderFlowResponse(_message.Message):
    __slots__ = ("sequence", "bar")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BAR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    bar: OrderFlowBar
    def __init__(self, sequence: _Optional[int] = ..., bar: _Optional[_Union[OrderFlowBar, _Mapping]] = ...) -> None: ...
