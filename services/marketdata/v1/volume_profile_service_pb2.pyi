from marketdata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetVolumeProfileRequest(_message.Message):
    __slots__ = ("instruments", "start_time_ms", "end_time_ms", "row_ticks", "value_area_pct")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ROW_TICKS_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_PCT_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    start_time_ms: int
    end_time_ms: int
    row_ticks: int
    value_area_pct: float
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., row_ticks: _Optional[int] = ..., value_area_pct: _Optional[float] = ...) -> None: ...

class VolumeProfileRow(_message.Message):
    __slots__ = ("price", "buy_volume", "sell_volume", "total_volume", "delta")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    BUY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SELL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    price: str
    buy_volume: str
    sell_volume: str
    total_volume: str
    delta: str
    def __init__(self, price: _Optional[str] = ..., buy_volume: _Optional[str] = ..., sell_volume: _Optional[str] = ..., total_volume: _Optional[str] = ..., delta: _Optional[str] = ...) -> None: ...

class GetVolumeProfileResponse(_message.Message):
    __slots__ = ("rows", "poc", "value_area_high", "value_area_low")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    POC_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_HIGH_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_LOW_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[VolumeProfileRow]
    poc: str
    value_area_high: str
    value_area_low: str
    def __init__(self, rows: _Optional[_Iterable[_Union[VolumeProfileRow, _Mapping]]] = ..., poc: _Optional[str] = ..., value_area_high: _Optional[str] = ..., value_area_low: _Optional[str] = ...) -> None: ...
