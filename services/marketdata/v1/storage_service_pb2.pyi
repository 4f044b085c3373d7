from marketdata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WriteTradesRequest(_message.Message):
    __slots__ = ("batch_id", "batch")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    batch: _common_pb2.TradeBatch
    def __init__(self, batch_id: _Optional[int] = ..., batch: _Optional[_Union[_common_pb2.TradeBatch, _Mapping]] = ...) -> None: ...

class WriteTradesResponse(_message.Message):
    __slots__ = ("batch_id", "inserted", "duplicates")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    inserted: int
    duplicates: int
    def __init__(self, batch_id: _Optional[int] = ..., inserted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class QueryTradesRequest(_message.Message):
    __slots__ = ("instruments", "start_time_ms", "end_time_ms")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    start_time_ms: int
    end_time_ms: int
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ...) -> None: ...

class QueryTradesResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _common_pb2.TradeBatch
    def __init__(self, batch: _Optional[_Union[_common_pb2.TradeBatch, _Mapping]] = ...) -> None: ...
