from marketdata.v1 import collector_service_pb2 as _collector_service_pb2
from marketdata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValueAreaMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_AREA_METHOD_UNSPECIFIED: _ClassVar[ValueAreaMethod]
    VALUE_AREA_METHOD_DUAL_ROW: _ClassVar[ValueAreaMethod]
    VALUE_AREA_METHOD_SINGLE_ROW: _ClassVar[ValueAreaMethod]

class VolumeUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOLUME_UNIT_UNSPECIFIED: _ClassVar[VolumeUnit]
    VOLUME_UNIT_BASE: _ClassVar[VolumeUnit]
    VOLUME_UNIT_QUOTE: _ClassVar[VolumeUnit]

class Anchor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANCHOR_UNSPECIFIED: _ClassVar[Anchor]
    ANCHOR_UTC_DAY: _ClassVar[Anchor]
    ANCHOR_UTC_WEEK: _ClassVar[Anchor]
    ANCHOR_SESSION: _ClassVar[Anchor]
VALUE_AREA_METHOD_UNSPECIFIED: ValueAreaMethod
VALUE_AREA_METHOD_DUAL_ROW: ValueAreaMethod
VALUE_AREA_METHOD_SINGLE_ROW: ValueAreaMethod
VOLUME_UNIT_UNSPECIFIED: VolumeUnit
VOLUME_UNIT_BASE: VolumeUnit
VOLUME_UNIT_QUOTE: VolumeUnit
ANCHOR_UNSPECIFIED: Anchor
ANCHOR_UTC_DAY: Anchor
ANCHOR_UTC_WEEK: Anchor
ANCHOR_SESSION: Anchor

class Session(_message.Message):
    __slots__ = ("time_zone", "start", "end")
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    time_zone: str
    start: str
    end: str
    def __init__(self, time_zone: _Optional[str] = ..., start: _Optional[str] = ..., end: _Optional[str] = ...) -> None: ...

class ProfileRange(_message.Message):
    __slots__ = ("start_time_ms", "end_time_ms", "timeframe", "lookback", "anchor", "session", "at_time_ms", "sessions_back")
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    AT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_BACK_FIELD_NUMBER: _ClassVar[int]
    start_time_ms: int
    end_time_ms: int
    timeframe: str
    lookback: int
    anchor: Anchor
    session: Session
    at_time_ms: int
    sessions_back: int
    def __init__(self, start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., timeframe: _Optional[str] = ..., lookback: _Optional[int] = ..., anchor: _Optional[_Union[Anchor, str]] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., at_time_ms: _Optional[int] = ..., sessions_back: _Optional[int] = ...) -> None: ...

class ProfileParameters(_message.Message):
    __slots__ = ("row_ticks", "row_size", "value_area_pct", "va_method", "volume_unit", "node_window")
    ROW_TICKS_FIELD_NUMBER: _ClassVar[int]
    ROW_SIZE_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_PCT_FIELD_NUMBER: _ClassVar[int]
    VA_METHOD_FIELD_NUMBER: _ClassVar[int]
    VOLUME_UNIT_FIELD_NUMBER: _ClassVar[int]
    NODE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    row_ticks: int
    row_size: str
    value_area_pct: float
    va_method: ValueAreaMethod
    volume_unit: VolumeUnit
    node_window: int
    def __init__(self, row_ticks: _Optional[int] = ..., row_size: _Optional[str] = ..., value_area_pct: _Optional[float] = ..., va_method: _Optional[_Union[ValueAreaMethod, str]] = ..., volume_unit: _Optional[_Union[VolumeUnit, str]] = ..., node_window: _Optional[int] = ...) -> None: ...

class GetVolumeProfileRequest(_message.Message):
    __slots__ = ("instruments", "range", "parameters", "composites")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITES_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    range: ProfileRange
    parameters: ProfileParameters
    composites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., range: _Optional[_Union[ProfileRange, _Mapping]] = ..., parameters: _Optional[_Union[ProfileParameters, _Mapping]] = ..., composites: _Optional[_Iterable[str]] = ...) -> None: ...

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

class VolumeNode(_message.Message):
    __slots__ = ("price", "total_volume")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    price: str
    total_volume: str
    def __init__(self, price: _Optional[str] = ..., total_volume: _Optional[str] = ...) -> None: ...

class TimeGap(_message.Message):
    __slots__ = ("start_time_ms", "end_time_ms", "reason")
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    start_time_ms: int
    end_time_ms: int
    reason: str
    def __init__(self, start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ProfileCoverage(_message.Message):
    __slots__ = ("minutes_expected", "minutes_covered", "minutes_with_trades", "known_gaps", "partial", "includes_live")
    MINUTES_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    MINUTES_COVERED_FIELD_NUMBER: _ClassVar[int]
    MINUTES_WITH_TRADES_FIELD_NUMBER: _ClassVar[int]
    KNOWN_GAPS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    INCLUDES_LIVE_FIELD_NUMBER: _ClassVar[int]
    minutes_expected: int
    minutes_covered: int
    minutes_with_trades: int
    known_gaps: _containers.RepeatedCompositeFieldContainer[TimeGap]
    partial: bool
    includes_live: bool
    def __init__(self, minutes_expected: _Optional[int] = ..., minutes_covered: _Optional[int] = ..., minutes_with_trades: _Optional[int] = ..., known_gaps: _Optional[_Iterable[_Union[TimeGap, _Mapping]]] = ..., partial: _Optional[bool] = ..., includes_live: _Optional[bool] = ...) -> None: ...

class VolumeProfile(_message.Message):
    __slots__ = ("rows", "poc", "value_area_high", "value_area_low", "total_volume", "buy_volume", "sell_volume", "delta", "value_area_volume", "value_area_share", "high_volume_nodes", "low_volume_nodes")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    POC_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_HIGH_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_LOW_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    BUY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SELL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_VOLUME_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_SHARE_FIELD_NUMBER: _ClassVar[int]
    HIGH_VOLUME_NODES_FIELD_NUMBER: _ClassVar[int]
    LOW_VOLUME_NODES_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[VolumeProfileRow]
    poc: str
    value_area_high: str
    value_area_low: str
    total_volume: str
    buy_volume: str
    sell_volume: str
    delta: str
    value_area_volume: str
    value_area_share: str
    high_volume_nodes: _containers.RepeatedCompositeFieldContainer[VolumeNode]
    low_volume_nodes: _containers.RepeatedCompositeFieldContainer[VolumeNode]
    def __init__(self, rows: _Optional[_Iterable[_Union[VolumeProfileRow, _Mapping]]] = ..., poc: _Optional[str] = ..., value_area_high: _Optional[str] = ..., value_area_low: _Optional[str] = ..., total_volume: _Optional[str] = ..., buy_volume: _Optional[str] = ..., sell_volume: _Optional[str] = ..., delta: _Optional[str] = ..., value_area_volume: _Optional[str] = ..., value_area_share: _Optional[str] = ..., high_volume_nodes: _Optional[_Iterable[_Union[VolumeNode, _Mapping]]] = ..., low_volume_nodes: _Optional[_Iterable[_Union[VolumeNode, _Mapping]]] = ...) -> None: ...

class EchoedParameters(_message.Message):
    __slots__ = ("instruments", "start_time_ms", "end_time_ms", "row_size", "row_ticks", "tick_size", "value_area_pct", "va_method", "volume_unit", "node_window")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ROW_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROW_TICKS_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_PCT_FIELD_NUMBER: _ClassVar[int]
    VA_METHOD_FIELD_NUMBER: _ClassVar[int]
    VOLUME_UNIT_FIELD_NUMBER: _ClassVar[int]
    NODE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    start_time_ms: int
    end_time_ms: int
    row_size: str
    row_ticks: int
    tick_size: str
    value_area_pct: str
    va_method: ValueAreaMethod
    volume_unit: VolumeUnit
    node_window: int
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., row_size: _Optional[str] = ..., row_ticks: _Optional[int] = ..., tick_size: _Optional[str] = ..., value_area_pct: _Optional[str] = ..., va_method: _Optional[_Union[ValueAreaMethod, str]] = ..., volume_unit: _Optional[_Union[VolumeUnit, str]] = ..., node_window: _Optional[int] = ...) -> None: ...

class GetVolumeProfileResponse(_message.Message):
    __slots__ = ("profile", "parameters", "coverage", "failovers")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    profile: VolumeProfile
    parameters: EchoedParameters
    coverage: ProfileCoverage
    failovers: _containers.RepeatedCompositeFieldContainer[_collector_service_pb2.Failover]
    def __init__(self, profile: _Optional[_Union[VolumeProfile, _Mapping]] = ..., parameters: _Optional[_Union[EchoedParameters, _Mapping]] = ..., coverage: _Optional[_Union[ProfileCoverage, _Mapping]] = ..., failovers: _Optional[_Iterable[_Union[_collector_service_pb2.Failover, _Mapping]]] = ...) -> None: ...

class GetVolumeProfileLevelsRequest(_message.Message):
    __slots__ = ("instruments", "range", "parameters", "naked_poc_sessions", "composites")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    NAKED_POC_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITES_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    range: ProfileRange
    parameters: ProfileParameters
    naked_poc_sessions: int
    composites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., range: _Optional[_Union[ProfileRange, _Mapping]] = ..., parameters: _Optional[_Union[ProfileParameters, _Mapping]] = ..., naked_poc_sessions: _Optional[int] = ..., composites: _Optional[_Iterable[str]] = ...) -> None: ...

class NakedPoc(_message.Message):
    __slots__ = ("price", "session_start_time_ms", "session_end_time_ms")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SESSION_START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    price: str
    session_start_time_ms: int
    session_end_time_ms: int
    def __init__(self, price: _Optional[str] = ..., session_start_time_ms: _Optional[int] = ..., session_end_time_ms: _Optional[int] = ...) -> None: ...

class GetVolumeProfileLevelsResponse(_message.Message):
    __slots__ = ("poc", "value_area_high", "value_area_low", "high_volume_nodes", "low_volume_nodes", "naked_pocs", "parameters", "coverage", "failovers")
    POC_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_HIGH_FIELD_NUMBER: _ClassVar[int]
    VALUE_AREA_LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_VOLUME_NODES_FIELD_NUMBER: _ClassVar[int]
    LOW_VOLUME_NODES_FIELD_NUMBER: _ClassVar[int]
    NAKED_POCS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    poc: str
    value_area_high: str
    value_area_low: str
    high_volume_nodes: _containers.RepeatedCompositeFieldContainer[VolumeNode]
    low_volume_nodes: _containers.RepeatedCompositeFieldContainer[VolumeNode]
    naked_pocs: _containers.RepeatedCompositeFieldContainer[NakedPoc]
    parameters: EchoedParameters
    coverage: ProfileCoverage
    failovers: _containers.RepeatedCompositeFieldContainer[_collector_service_pb2.Failover]
    def __init__(self, poc: _Optional[str] = ..., value_area_high: _Optional[str] = ..., value_area_low: _Optional[str] = ..., high_volume_nodes: _Optional[_Iterable[_Union[VolumeNode, _Mapping]]] = ..., low_volume_nodes: _Optional[_Iterable[_Union[VolumeNode, _Mapping]]] = ..., naked_pocs: _Optional[_Iterable[_Union[NakedPoc, _Mapping]]] = ..., parameters: _Optional[_Union[EchoedParameters, _Mapping]] = ..., coverage: _Optional[_Union[ProfileCoverage, _Mapping]] = ..., failovers: _Optional[_Iterable[_Union[_collector_service_pb2.Failover, _Mapping]]] = ...) -> None: ...

class StreamVolumeProfileRequest(_message.Message):
    __slots__ = ("instruments", "range", "parameters", "interval_ms", "include_rows", "composites")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ROWS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITES_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    range: ProfileRange
    parameters: ProfileParameters
    interval_ms: int
    include_rows: bool
    composites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., range: _Optional[_Union[ProfileRange, _Mapping]] = ..., parameters: _Optional[_Union[ProfileParameters, _Mapping]] = ..., interval_ms: _Optional[int] = ..., include_rows: _Optional[bool] = ..., composites: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamVolumeProfileResponse(_message.Message):
    __slots__ = ("as_of_time_ms", "bar_close", "profile", "parameters", "coverage", "failovers")
    AS_OF_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    BAR_CLOSE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    as_of_time_ms: int
    bar_close: bool
    profile: VolumeProfile
    parameters: EchoedParameters
    coverage: ProfileCoverage
    failovers: _containers.RepeatedCompositeFieldContainer[_collector_service_pb2.Failover]
    def __init__(self, as_of_time_ms: _Optional[int] = ..., bar_close: _Optional[bool] = ..., profile: _Optional[_Union[VolumeProfile, _Mapping]] = ..., parameters: _Optional[_Union[EchoedParameters, _Mapping]] = ..., coverage: _Optional[_Union[ProfileCoverage, _Mapping]] = ..., failovers: _Optional[_Iterable[_Union[_collector_service_pb2.Failover, _Mapping]]] = ...) -> None: ...
