from marketdata.v1 import collector_service_pb2 as _collector_service_pb2
from marketdata.v1 import common_pb2 as _common_pb2
from marketdata.v1 import volume_profile_service_pb2 as _volume_profile_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CvdAnchorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CVD_ANCHOR_KIND_UNSPECIFIED: _ClassVar[CvdAnchorKind]
    CVD_ANCHOR_KIND_UTC_DAY: _ClassVar[CvdAnchorKind]
    CVD_ANCHOR_KIND_UTC_WEEK: _ClassVar[CvdAnchorKind]
    CVD_ANCHOR_KIND_SESSION: _ClassVar[CvdAnchorKind]
    CVD_ANCHOR_KIND_TIMESTAMP: _ClassVar[CvdAnchorKind]

class ZoneKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ZONE_KIND_UNSPECIFIED: _ClassVar[ZoneKind]
    ZONE_KIND_STACKED_IMBALANCE: _ClassVar[ZoneKind]
    ZONE_KIND_VOLUME_IMBALANCE: _ClassVar[ZoneKind]
    ZONE_KIND_ABSORPTION: _ClassVar[ZoneKind]
    ZONE_KIND_CVD_DIVERGENCE: _ClassVar[ZoneKind]

class AbsorptionRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ABSORPTION_RULE_UNSPECIFIED: _ClassVar[AbsorptionRule]
    ABSORPTION_RULE_VOLUME: _ClassVar[AbsorptionRule]
    ABSORPTION_RULE_BOOK_REFILL: _ClassVar[AbsorptionRule]
CVD_ANCHOR_KIND_UNSPECIFIED: CvdAnchorKind
CVD_ANCHOR_KIND_UTC_DAY: CvdAnchorKind
CVD_ANCHOR_KIND_UTC_WEEK: CvdAnchorKind
CVD_ANCHOR_KIND_SESSION: CvdAnchorKind
CVD_ANCHOR_KIND_TIMESTAMP: CvdAnchorKind
ZONE_KIND_UNSPECIFIED: ZoneKind
ZONE_KIND_STACKED_IMBALANCE: ZoneKind
ZONE_KIND_VOLUME_IMBALANCE: ZoneKind
ZONE_KIND_ABSORPTION: ZoneKind
ZONE_KIND_CVD_DIVERGENCE: ZoneKind
ABSORPTION_RULE_UNSPECIFIED: AbsorptionRule
ABSORPTION_RULE_VOLUME: AbsorptionRule
ABSORPTION_RULE_BOOK_REFILL: AbsorptionRule

class CvdAnchor(_message.Message):
    __slots__ = ("kind", "session", "time_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    kind: CvdAnchorKind
    session: _volume_profile_service_pb2.Session
    time_ms: int
    def __init__(self, kind: _Optional[_Union[CvdAnchorKind, str]] = ..., session: _Optional[_Union[_volume_profile_service_pb2.Session, _Mapping]] = ..., time_ms: _Optional[int] = ...) -> None: ...

class ImbalanceParameters(_message.Message):
    __slots__ = ("ratio", "min_volume", "stacked_min_rows")
    RATIO_FIELD_NUMBER: _ClassVar[int]
    MIN_VOLUME_FIELD_NUMBER: _ClassVar[int]
    STACKED_MIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    ratio: str
    min_volume: str
    stacked_min_rows: int
    def __init__(self, ratio: _Optional[str] = ..., min_volume: _Optional[str] = ..., stacked_min_rows: _Optional[int] = ...) -> None: ...

class AbsorptionParameters(_message.Message):
    __slots__ = ("volume_multiple", "window_bars", "min_volume", "refill_ratio", "ignore_order_book")
    VOLUME_MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BARS_FIELD_NUMBER: _ClassVar[int]
    MIN_VOLUME_FIELD_NUMBER: _ClassVar[int]
    REFILL_RATIO_FIELD_NUMBER: _ClassVar[int]
    IGNORE_ORDER_BOOK_FIELD_NUMBER: _ClassVar[int]
    volume_multiple: str
    window_bars: int
    min_volume: str
    refill_ratio: str
    ignore_order_book: bool
    def __init__(self, volume_multiple: _Optional[str] = ..., window_bars: _Optional[int] = ..., min_volume: _Optional[str] = ..., refill_ratio: _Optional[str] = ..., ignore_order_book: _Optional[bool] = ...) -> None: ...

class DivergenceParameters(_message.Message):
    __slots__ = ("pivot_left", "pivot_right", "include_hidden")
    PIVOT_LEFT_FIELD_NUMBER: _ClassVar[int]
    PIVOT_RIGHT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HIDDEN_FIELD_NUMBER: _ClassVar[int]
    pivot_left: int
    pivot_right: int
    include_hidden: bool
    def __init__(self, pivot_left: _Optional[int] = ..., pivot_right: _Optional[int] = ..., include_hidden: _Optional[bool] = ...) -> None: ...

class OrderFlowParameters(_message.Message):
    __slots__ = ("row_ticks", "row_size", "cvd_anchor", "large_trade_min_size", "include_rows", "imbalance", "absorption", "divergence")
    ROW_TICKS_FIELD_NUMBER: _ClassVar[int]
    ROW_SIZE_FIELD_NUMBER: _ClassVar[int]
    CVD_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    LARGE_TRADE_MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ROWS_FIELD_NUMBER: _ClassVar[int]
    IMBALANCE_FIELD_NUMBER: _ClassVar[int]
    ABSORPTION_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    row_ticks: int
    row_size: str
    cvd_anchor: CvdAnchor
    large_trade_min_size: str
    include_rows: bool
    imbalance: ImbalanceParameters
    absorption: AbsorptionParameters
    divergence: DivergenceParameters
    def __init__(self, row_ticks: _Optional[int] = ..., row_size: _Optional[str] = ..., cvd_anchor: _Optional[_Union[CvdAnchor, _Mapping]] = ..., large_trade_min_size: _Optional[str] = ..., include_rows: _Optional[bool] = ..., imbalance: _Optional[_Union[ImbalanceParameters, _Mapping]] = ..., absorption: _Optional[_Union[AbsorptionParameters, _Mapping]] = ..., divergence: _Optional[_Union[DivergenceParameters, _Mapping]] = ...) -> None: ...

class GetOrderFlowRequest(_message.Message):
    __slots__ = ("instruments", "composites", "timeframe", "start_time_ms", "end_time_ms", "last_bars", "parameters")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITES_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_BARS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    composites: _containers.RepeatedScalarFieldContainer[str]
    timeframe: str
    start_time_ms: int
    end_time_ms: int
    last_bars: int
    parameters: OrderFlowParameters
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., composites: _Optional[_Iterable[str]] = ..., timeframe: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., last_bars: _Optional[int] = ..., parameters: _Optional[_Union[OrderFlowParameters, _Mapping]] = ...) -> None: ...

class OrderFlowRow(_message.Message):
    __slots__ = ("price", "buy_volume", "sell_volume", "delta")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    BUY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SELL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    price: str
    buy_volume: str
    sell_volume: str
    delta: str
    def __init__(self, price: _Optional[str] = ..., buy_volume: _Optional[str] = ..., sell_volume: _Optional[str] = ..., delta: _Optional[str] = ...) -> None: ...

class DiagonalImbalance(_message.Message):
    __slots__ = ("price", "side", "ratio", "volume", "opposite_volume", "opposite_price")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    OPPOSITE_VOLUME_FIELD_NUMBER: _ClassVar[int]
    OPPOSITE_PRICE_FIELD_NUMBER: _ClassVar[int]
    price: str
    side: _common_pb2.Side
    ratio: str
    volume: str
    opposite_volume: str
    opposite_price: str
    def __init__(self, price: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., ratio: _Optional[str] = ..., volume: _Optional[str] = ..., opposite_volume: _Optional[str] = ..., opposite_price: _Optional[str] = ...) -> None: ...

class LargeTrade(_message.Message):
    __slots__ = ("instrument", "trade_id", "exchange_time_ms", "price", "size", "side")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    trade_id: str
    exchange_time_ms: int
    price: str
    size: str
    side: _common_pb2.Side
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., trade_id: _Optional[str] = ..., exchange_time_ms: _Optional[int] = ..., price: _Optional[str] = ..., size: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ...) -> None: ...

class StackedImbalanceEvidence(_message.Message):
    __slots__ = ("rows", "volume", "opposite_volume", "min_ratio")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    OPPOSITE_VOLUME_FIELD_NUMBER: _ClassVar[int]
    MIN_RATIO_FIELD_NUMBER: _ClassVar[int]
    rows: int
    volume: str
    opposite_volume: str
    min_ratio: str
    def __init__(self, rows: _Optional[int] = ..., volume: _Optional[str] = ..., opposite_volume: _Optional[str] = ..., min_ratio: _Optional[str] = ...) -> None: ...

class VolumeImbalanceEvidence(_message.Message):
    __slots__ = ("previous_close", "next_open", "previous_delta", "next_delta")
    PREVIOUS_CLOSE_FIELD_NUMBER: _ClassVar[int]
    NEXT_OPEN_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DELTA_FIELD_NUMBER: _ClassVar[int]
    NEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    previous_close: str
    next_open: str
    previous_delta: str
    next_delta: str
    def __init__(self, previous_close: _Optional[str] = ..., next_open: _Optional[str] = ..., previous_delta: _Optional[str] = ..., next_delta: _Optional[str] = ...) -> None: ...

class AbsorptionEvidence(_message.Message):
    __slots__ = ("rule", "order_book_used", "volume", "mean_row_volume", "multiple", "displayed_size", "resting_size", "window_bars", "window_extreme")
    RULE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BOOK_USED_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    MEAN_ROW_VOLUME_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    DISPLAYED_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESTING_SIZE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BARS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_EXTREME_FIELD_NUMBER: _ClassVar[int]
    rule: AbsorptionRule
    order_book_used: bool
    volume: str
    mean_row_volume: str
    multiple: str
    displayed_size: str
    resting_size: str
    window_bars: int
    window_extreme: str
    def __init__(self, rule: _Optional[_Union[AbsorptionRule, str]] = ..., order_book_used: _Optional[bool] = ..., volume: _Optional[str] = ..., mean_row_volume: _Optional[str] = ..., multiple: _Optional[str] = ..., displayed_size: _Optional[str] = ..., resting_size: _Optional[str] = ..., window_bars: _Optional[int] = ..., window_extreme: _Optional[str] = ...) -> None: ...

class DivergenceEvidence(_message.Message):
    __slots__ = ("hidden", "first_pivot_time_ms", "first_price", "first_cvd", "second_pivot_time_ms", "second_price", "second_cvd")
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    FIRST_PIVOT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_PRICE_FIELD_NUMBER: _ClassVar[int]
    FIRST_CVD_FIELD_NUMBER: _ClassVar[int]
    SECOND_PIVOT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SECOND_PRICE_FIELD_NUMBER: _ClassVar[int]
    SECOND_CVD_FIELD_NUMBER: _ClassVar[int]
    hidden: bool
    first_pivot_time_ms: int
    first_price: str
    first_cvd: str
    second_pivot_time_ms: int
    second_price: str
    second_cvd: str
    def __init__(self, hidden: _Optional[bool] = ..., first_pivot_time_ms: _Optional[int] = ..., first_price: _Optional[str] = ..., first_cvd: _Optional[str] = ..., second_pivot_time_ms: _Optional[int] = ..., second_price: _Optional[str] = ..., second_cvd: _Optional[str] = ...) -> None: ...

class Zone(_message.Message):
    __slots__ = ("kind", "side", "price_low", "price_high", "start_time_ms", "end_time_ms", "stacked_imbalance", "volume_imbalance", "absorption", "divergence")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_LOW_FIELD_NUMBER: _ClassVar[int]
    PRICE_HIGH_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    STACKED_IMBALANCE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_IMBALANCE_FIELD_NUMBER: _ClassVar[int]
    ABSORPTION_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    kind: ZoneKind
    side: _common_pb2.Side
    price_low: str
    price_high: str
    start_time_ms: int
    end_time_ms: int
    stacked_imbalance: StackedImbalanceEvidence
    volume_imbalance: VolumeImbalanceEvidence
    absorption: AbsorptionEvidence
    divergence: DivergenceEvidence
    def __init__(self, kind: _Optional[_Union[ZoneKind, str]] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price_low: _Optional[str] = ..., price_high: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., stacked_imbalance: _Optional[_Union[StackedImbalanceEvidence, _Mapping]] = ..., volume_imbalance: _Optional[_Union[VolumeImbalanceEvidence, _Mapping]] = ..., absorption: _Optional[_Union[AbsorptionEvidence, _Mapping]] = ..., divergence: _Optional[_Union[DivergenceEvidence, _Mapping]] = ...) -> None: ...

class OrderFlowBar(_message.Message):
    __slots__ = ("start_time_ms", "end_time_ms", "open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "delta", "max_delta", "min_delta", "cvd", "trades", "large_trades", "large_trade_volume", "rows", "imbalances", "zones", "closed")
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    BUY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SELL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MAX_DELTA_FIELD_NUMBER: _ClassVar[int]
    MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    CVD_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    LARGE_TRADES_FIELD_NUMBER: _ClassVar[int]
    LARGE_TRADE_VOLUME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    IMBALANCES_FIELD_NUMBER: _ClassVar[int]
    ZONES_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    start_time_ms: int
    end_time_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    buy_volume: str
    sell_volume: str
    delta: str
    max_delta: str
    min_delta: str
    cvd: str
    trades: int
    large_trades: int
    large_trade_volume: str
    rows: _containers.RepeatedCompositeFieldContainer[OrderFlowRow]
    imbalances: _containers.RepeatedCompositeFieldContainer[DiagonalImbalance]
    zones: _containers.RepeatedCompositeFieldContainer[Zone]
    closed: bool
    def __init__(self, start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., volume: _Optional[str] = ..., buy_volume: _Optional[str] = ..., sell_volume: _Optional[str] = ..., delta: _Optional[str] = ..., max_delta: _Optional[str] = ..., min_delta: _Optional[str] = ..., cvd: _Optional[str] = ..., trades: _Optional[int] = ..., large_trades: _Optional[int] = ..., large_trade_volume: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[OrderFlowRow, _Mapping]]] = ..., imbalances: _Optional[_Iterable[_Union[DiagonalImbalance, _Mapping]]] = ..., zones: _Optional[_Iterable[_Union[Zone, _Mapping]]] = ..., closed: _Optional[bool] = ...) -> None: ...

class OrderFlowCoverage(_message.Message):
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
    known_gaps: _containers.RepeatedCompositeFieldContainer[_volume_profile_service_pb2.TimeGap]
    partial: bool
    includes_live: bool
    def __init__(self, minutes_expected: _Optional[int] = ..., minutes_covered: _Optional[int] = ..., minutes_with_trades: _Optional[int] = ..., known_gaps: _Optional[_Iterable[_Union[_volume_profile_service_pb2.TimeGap, _Mapping]]] = ..., partial: _Optional[bool] = ..., includes_live: _Optional[bool] = ...) -> None: ...

class EchoedOrderFlowParameters(_message.Message):
    __slots__ = ("instruments", "composites", "timeframe", "start_time_ms", "end_time_ms", "row_size", "tick_size", "cvd_anchor", "cvd_anchor_start_time_ms", "large_trade_min_size", "imbalance_ratio", "imbalance_min_volume", "stacked_min_rows", "absorption_volume_multiple", "absorption_window_bars", "absorption_min_volume", "absorption_refill_ratio", "absorption_ignore_order_book", "divergence_pivot_left", "divergence_pivot_right", "divergence_include_hidden")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITES_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ROW_SIZE_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CVD_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    CVD_ANCHOR_START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LARGE_TRADE_MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMBALANCE_RATIO_FIELD_NUMBER: _ClassVar[int]
    IMBALANCE_MIN_VOLUME_FIELD_NUMBER: _ClassVar[int]
    STACKED_MIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    ABSORPTION_VOLUME_MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    ABSORPTION_WINDOW_BARS_FIELD_NUMBER: _ClassVar[int]
    ABSORPTION_MIN_VOLUME_FIELD_NUMBER: _ClassVar[int]
    ABSORPTION_REFILL_RATIO_FIELD_NUMBER: _ClassVar[int]
    ABSORPTION_IGNORE_ORDER_BOOK_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_PIVOT_LEFT_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_PIVOT_RIGHT_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_INCLUDE_HIDDEN_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    composites: _containers.RepeatedScalarFieldContainer[str]
    timeframe: str
    start_time_ms: int
    end_time_ms: int
    row_size: str
    tick_size: str
    cvd_anchor: CvdAnchorKind
    cvd_anchor_start_time_ms: int
    large_trade_min_size: str
    imbalance_ratio: str
    imbalance_min_volume: str
    stacked_min_rows: int
    absorption_volume_multiple: str
    absorption_window_bars: int
    absorption_min_volume: str
    absorption_refill_ratio: str
    absorption_ignore_order_book: bool
    divergence_pivot_left: int
    divergence_pivot_right: int
    divergence_include_hidden: bool
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., composites: _Optional[_Iterable[str]] = ..., timeframe: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., row_size: _Optional[str] = ..., tick_size: _Optional[str] = ..., cvd_anchor: _Optional[_Union[CvdAnchorKind, str]] = ..., cvd_anchor_start_time_ms: _Optional[int] = ..., large_trade_min_size: _Optional[str] = ..., imbalance_ratio: _Optional[str] = ..., imbalance_min_volume: _Optional[str] = ..., stacked_min_rows: _Optional[int] = ..., absorption_volume_multiple: _Optional[str] = ..., absorption_window_bars: _Optional[int] = ..., absorption_min_volume: _Optional[str] = ..., absorption_refill_ratio: _Optional[str] = ..., absorption_ignore_order_book: _Optional[bool] = ..., divergence_pivot_left: _Optional[int] = ..., divergence_pivot_right: _Optional[int] = ..., divergence_include_hidden: _Optional[bool] = ...) -> None: ...

class GetOrderFlowResponse(_message.Message):
    __slots__ = ("bars", "parameters", "coverage", "large_trades", "large_trades_truncated", "failovers")
    BARS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    LARGE_TRADES_FIELD_NUMBER: _ClassVar[int]
    LARGE_TRADES_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    bars: _containers.RepeatedCompositeFieldContainer[OrderFlowBar]
    parameters: EchoedOrderFlowParameters
    coverage: OrderFlowCoverage
    large_trades: _containers.RepeatedCompositeFieldContainer[LargeTrade]
    large_trades_truncated: bool
    failovers: _containers.RepeatedCompositeFieldContainer[_collector_service_pb2.Failover]
    def __init__(self, bars: _Optional[_Iterable[_Union[OrderFlowBar, _Mapping]]] = ..., parameters: _Optional[_Union[EchoedOrderFlowParameters, _Mapping]] = ..., coverage: _Optional[_Union[OrderFlowCoverage, _Mapping]] = ..., large_trades: _Optional[_Iterable[_Union[LargeTrade, _Mapping]]] = ..., large_trades_truncated: _Optional[bool] = ..., failovers: _Optional[_Iterable[_Union[_collector_service_pb2.Failover, _Mapping]]] = ...) -> None: ...

class StreamOrderFlowRequest(_message.Message):
    __slots__ = ("instruments", "composites", "timeframe", "parameters", "resume_cursor")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITES_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    composites: _containers.RepeatedScalarFieldContainer[str]
    timeframe: str
    parameters: OrderFlowParameters
    resume_cursor: str
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., composites: _Optional[_Iterable[str]] = ..., timeframe: _Optional[str] = ..., parameters: _Optional[_Union[OrderFlowParameters, _Mapping]] = ..., resume_cursor: _Optional[str] = ...) -> None: ...

class StreamOrderFlowResponse(_message.Message):
    __slots__ = ("sequence", "resume_cursor", "bar", "new_imbalances", "new_zones", "bar_closed", "snapshot", "replayed", "last_trade_ids", "failovers", "parameters", "new_large_trades")
    class LastTradeIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    BAR_FIELD_NUMBER: _ClassVar[int]
    NEW_IMBALANCES_FIELD_NUMBER: _ClassVar[int]
    NEW_ZONES_FIELD_NUMBER: _ClassVar[int]
    BAR_CLOSED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    LAST_TRADE_IDS_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    NEW_LARGE_TRADES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    resume_cursor: str
    bar: OrderFlowBar
    new_imbalances: _containers.RepeatedCompositeFieldContainer[DiagonalImbalance]
    new_zones: _containers.RepeatedCompositeFieldContainer[Zone]
    bar_closed: bool
    snapshot: bool
    replayed: bool
    last_trade_ids: _containers.ScalarMap[str, str]
    failovers: _containers.RepeatedCompositeFieldContainer[_collector_service_pb2.Failover]
    parameters: EchoedOrderFlowParameters
    new_large_trades: _containers.RepeatedCompositeFieldContainer[LargeTrade]
    def __init__(self, sequence: _Optional[int] = ..., resume_cursor: _Optional[str] = ..., bar: _Optional[_Union[OrderFlowBar, _Mapping]] = ..., new_imbalances: _Optional[_Iterable[_Union[DiagonalImbalance, _Mapping]]] = ..., new_zones: _Optional[_Iterable[_Union[Zone, _Mapping]]] = ..., bar_closed: _Optional[bool] = ..., snapshot: _Optional[bool] = ..., replayed: _Optional[bool] = ..., last_trade_ids: _Optional[_Mapping[str, str]] = ..., failovers: _Optional[_Iterable[_Union[_collector_service_pb2.Failover, _Mapping]]] = ..., parameters: _Optional[_Union[EchoedOrderFlowParameters, _Mapping]] = ..., new_large_trades: _Optional[_Iterable[_Union[LargeTrade, _Mapping]]] = ...) -> None: ...
