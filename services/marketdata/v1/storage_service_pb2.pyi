from marketdata.v1 import common_pb2 as _common_pb2
from marketdata.v1 import order_book_pb2 as _order_book_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FootprintResolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FOOTPRINT_RESOLUTION_UNSPECIFIED: _ClassVar[FootprintResolution]
    FOOTPRINT_RESOLUTION_1M: _ClassVar[FootprintResolution]
    FOOTPRINT_RESOLUTION_1H: _ClassVar[FootprintResolution]
FOOTPRINT_RESOLUTION_UNSPECIFIED: FootprintResolution
FOOTPRINT_RESOLUTION_1M: FootprintResolution
FOOTPRINT_RESOLUTION_1H: FootprintResolution

class WriteTradesRequest(_message.Message):
    __slots__ = ("batch_id", "batch", "tick_size")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    batch: _common_pb2.TradeBatch
    tick_size: str
    def __init__(self, batch_id: _Optional[int] = ..., batch: _Optional[_Union[_common_pb2.TradeBatch, _Mapping]] = ..., tick_size: _Optional[str] = ...) -> None: ...

class WriteTradesResponse(_message.Message):
    __slots__ = ("batch_id", "inserted", "duplicates", "late_bars")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    LATE_BARS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    inserted: int
    duplicates: int
    late_bars: int
    def __init__(self, batch_id: _Optional[int] = ..., inserted: _Optional[int] = ..., duplicates: _Optional[int] = ..., late_bars: _Optional[int] = ...) -> None: ...

class QueryTradesRequest(_message.Message):
    __slots__ = ("instruments", "start_time_ms", "end_time_ms", "limit", "page_token", "min_size")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    start_time_ms: int
    end_time_ms: int
    limit: int
    page_token: str
    min_size: str
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., min_size: _Optional[str] = ...) -> None: ...

class QueryTradesResponse(_message.Message):
    __slots__ = ("batch", "next_page_token")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    batch: _common_pb2.TradeBatch
    next_page_token: str
    def __init__(self, batch: _Optional[_Union[_common_pb2.TradeBatch, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WriteBookSnapshotsRequest(_message.Message):
    __slots__ = ("batch_id", "snapshots")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    snapshots: _containers.RepeatedCompositeFieldContainer[_order_book_pb2.OrderBookSnapshot]
    def __init__(self, batch_id: _Optional[int] = ..., snapshots: _Optional[_Iterable[_Union[_order_book_pb2.OrderBookSnapshot, _Mapping]]] = ...) -> None: ...

class WriteBookSnapshotsResponse(_message.Message):
    __slots__ = ("batch_id", "inserted", "duplicates")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    inserted: int
    duplicates: int
    def __init__(self, batch_id: _Optional[int] = ..., inserted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class QueryBookSnapshotsRequest(_message.Message):
    __slots__ = ("instrument", "start_time_ms", "end_time_ms", "limit", "depth")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    start_time_ms: int
    end_time_ms: int
    limit: int
    depth: int
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., limit: _Optional[int] = ..., depth: _Optional[int] = ...) -> None: ...

class QueryBookSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[_order_book_pb2.OrderBookSnapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[_order_book_pb2.OrderBookSnapshot, _Mapping]]] = ...) -> None: ...

class FootprintRow(_message.Message):
    __slots__ = ("price", "buy_volume", "sell_volume", "buy_trades", "sell_trades")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    BUY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SELL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    BUY_TRADES_FIELD_NUMBER: _ClassVar[int]
    SELL_TRADES_FIELD_NUMBER: _ClassVar[int]
    price: str
    buy_volume: str
    sell_volume: str
    buy_trades: int
    sell_trades: int
    def __init__(self, price: _Optional[str] = ..., buy_volume: _Optional[str] = ..., sell_volume: _Optional[str] = ..., buy_trades: _Optional[int] = ..., sell_trades: _Optional[int] = ...) -> None: ...

class FootprintBar(_message.Message):
    __slots__ = ("start_time_ms", "resolution", "row_size", "rows", "version", "trades", "buy_volume", "sell_volume", "first_trade_time_ms", "last_trade_time_ms", "open", "high", "low", "close", "max_delta", "min_delta")
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ROW_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    BUY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SELL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    FIRST_TRADE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_TRADE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    MAX_DELTA_FIELD_NUMBER: _ClassVar[int]
    MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    start_time_ms: int
    resolution: FootprintResolution
    row_size: str
    rows: _containers.RepeatedCompositeFieldContainer[FootprintRow]
    version: int
    trades: int
    buy_volume: str
    sell_volume: str
    first_trade_time_ms: int
    last_trade_time_ms: int
    open: str
    high: str
    low: str
    close: str
    max_delta: str
    min_delta: str
    def __init__(self, start_time_ms: _Optional[int] = ..., resolution: _Optional[_Union[FootprintResolution, str]] = ..., row_size: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[FootprintRow, _Mapping]]] = ..., version: _Optional[int] = ..., trades: _Optional[int] = ..., buy_volume: _Optional[str] = ..., sell_volume: _Optional[str] = ..., first_trade_time_ms: _Optional[int] = ..., last_trade_time_ms: _Optional[int] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., max_delta: _Optional[str] = ..., min_delta: _Optional[str] = ...) -> None: ...

class QueryFootprintsRequest(_message.Message):
    __slots__ = ("instrument", "start_time_ms", "end_time_ms", "resolution")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    start_time_ms: int
    end_time_ms: int
    resolution: FootprintResolution
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., resolution: _Optional[_Union[FootprintResolution, str]] = ...) -> None: ...

class QueryFootprintsResponse(_message.Message):
    __slots__ = ("instrument", "bars")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    bars: _containers.RepeatedCompositeFieldContainer[FootprintBar]
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., bars: _Optional[_Iterable[_Union[FootprintBar, _Mapping]]] = ...) -> None: ...

class GetStorageStatsRequest(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ...) -> None: ...

class CollectionStats(_message.Message):
    __slots__ = ("collection", "instrument", "count", "bytes", "oldest_time_ms", "newest_time_ms")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OLDEST_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    NEWEST_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    instrument: _common_pb2.Instrument
    count: int
    bytes: int
    oldest_time_ms: int
    newest_time_ms: int
    def __init__(self, collection: _Optional[str] = ..., instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., count: _Optional[int] = ..., bytes: _Optional[int] = ..., oldest_time_ms: _Optional[int] = ..., newest_time_ms: _Optional[int] = ...) -> None: ...

class GetStorageStatsResponse(_message.Message):
    __slots__ = ("collections", "backend", "writable", "last_error", "store_bytes", "disk_free_bytes", "disk_free_low")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_LOW_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionStats]
    backend: str
    writable: bool
    last_error: str
    store_bytes: int
    disk_free_bytes: int
    disk_free_low: bool
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionStats, _Mapping]]] = ..., backend: _Optional[str] = ..., writable: _Optional[bool] = ..., last_error: _Optional[str] = ..., store_bytes: _Optional[int] = ..., disk_free_bytes: _Optional[int] = ..., disk_free_low: _Optional[bool] = ...) -> None: ...

class ApplyRetentionRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class RetentionResult(_message.Message):
    __slots__ = ("collection", "instrument", "cutoff_time_ms", "removed", "archived", "archive_files", "rolled_up")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_FILES_FIELD_NUMBER: _ClassVar[int]
    ROLLED_UP_FIELD_NUMBER: _ClassVar[int]
    collection: str
    instrument: _common_pb2.Instrument
    cutoff_time_ms: int
    removed: int
    archived: int
    archive_files: _containers.RepeatedScalarFieldContainer[str]
    rolled_up: int
    def __init__(self, collection: _Optional[str] = ..., instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., cutoff_time_ms: _Optional[int] = ..., removed: _Optional[int] = ..., archived: _Optional[int] = ..., archive_files: _Optional[_Iterable[str]] = ..., rolled_up: _Optional[int] = ...) -> None: ...

class ApplyRetentionResponse(_message.Message):
    __slots__ = ("dry_run", "results")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    results: _containers.RepeatedCompositeFieldContainer[RetentionResult]
    def __init__(self, dry_run: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[RetentionResult, _Mapping]]] = ...) -> None: ...

class GetLastTradesRequest(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ...) -> None: ...

class GetLastTradesResponse(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[_common_pb2.TradeBatch]
    def __init__(self, batches: _Optional[_Iterable[_Union[_common_pb2.TradeBatch, _Mapping]]] = ...) -> None: ...
