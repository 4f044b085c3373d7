"""The methodology resources: how the numbers the tools return are computed, with the parameters'
meaning, so an agent can explain them. Kept in step with docs/volume-profile.md and docs/order-flow.md
(the services' own pages are the reference)."""

from __future__ import annotations

VOLUME_PROFILE = """\
# Volume profile: how the numbers are computed

All prices and volumes are exact decimal strings (never binary floats). Times are exchange time, UTC.
Volumes are aggressor-side: a buy is a taker buy (lifting the offer), a sell a taker sell.

- **Row**: `floor(price / row_size) * row_size`. `row_size` = `row_ticks` x the tick size (default 1 tick;
  with several instruments the largest tick), or `row_size` as a decimal (a whole multiple of every
  instrument's tick). A profile's rows run from the lowest to the highest traded row, empty rows included.
- **Range**: one of an anchor (`utc_day` 00:00-24:00 UTC, `utc_week` from Monday 00:00 UTC, `session` in
  an IANA time zone with local start/end; `sessions_back` for earlier ones), `start`/`end`, or
  `timeframe` + `lookback` bars. Ranges are merges of whole 1-minute bars: the start is floored and the
  end rounded up to the minute; the effective range is echoed in `parameters`.
- **Several instruments** (e.g. the same pair on two exchanges): volumes are added row by row.
  `best:SYMBOL` reads each stretch of the range from the feed the failover composite followed then.
- **POC** (point of control): the row with the most volume; tie: the row nearest the middle of the
  profile; still tied: the lower price.
- **Value area** (`value_area_pct`, default 70): start at the POC; while the value area holds less than
  pct x total volume, look at the next two rows above and the next two below (`dual_row`; one row with
  `single_row`), add the side with more volume (tie: above); when one side runs out, take the other.
  **VAH/VAL** are the value area's top and bottom rows; `value_area_share` is the share reached.
- **HVN/LVN** (high/low-volume nodes): rows whose volume, smoothed by a centred moving average over
  `node_window` rows (default 5), is strictly above (HVN) or below (LVN) both neighbours'.
- **Naked POC**: a closed previous session's POC that no later trade has touched (at the request's row
  size), newest first.
- **Delta**: buy - sell volume, per row and in total. **Volume unit**: `base` (size) or `quote`
  (price x size).
- **Coverage**: minutes of the range up to now that the services hold data for; `complete: false` with
  `known_gaps` when part of the range is before the stored history, was never collected, or has a
  trade-id gap the collector could not repair. A minute without trades and a minute nobody collected
  look alike, so coverage names only the gaps the services know about.
"""

ORDER_FLOW = """\
# Order flow: how the numbers are computed

Bars are merges of 1-minute footprints (per price row: aggressive buy and sell volume, trade counts)
plus the collector's live trades for the newest minutes, aligned to the UTC epoch: timeframes 1m 5m
15m 1h 4h 1d. Exact decimal strings throughout; volumes in base quantity.

- **Row**: `floor(price / row_size) * row_size`, `row_size` = `row_ticks` x tick (default 1 tick) or
  `row_size` as a decimal.
- **Delta** = buy - sell volume (aggressor side), per row and per bar; **max_delta/min_delta**: the
  highest and lowest running delta within the bar. **CVD** (cumulative volume delta): the sum of every
  trade's delta from the start of the anchor period (`utc_day` default: resets 00:00 UTC; `utc_week`;
  `session`; or a fixed `timestamp`) to the bar's end, trades before the requested range included.
- **Diagonal imbalance** (`imbalance_ratio`, default 3; `imbalance_min_volume`, default 0): a buy
  imbalance at row p when buy(p) >= ratio x sell(p - row) and buy(p) > min volume; a sell imbalance at
  p when sell(p) >= ratio x buy(p + row) and sell(p) > min volume. A missing or empty opposite row
  counts as 0. Diagonal because a taker buy lifts the offer while a taker sell hits the bid one row
  lower.
- **Stacked imbalance zone**: `stacked_min_rows` (default 3) or more adjacent rows of same-side
  imbalances in one bar; often read as support (buy) or resistance (sell).
- **Volume imbalance zone**: a gap between the bodies (open..close) of two consecutive bars.
- **Absorption** (volume rule): at a row, one side's aggressor volume >= `absorption_volume_multiple`
  (default 3) x the bar's mean row volume (total volume / rows of the bar's grid) while price does not
  trade through the row during the next `absorption_window_bars` (default 3) bars: for heavy buying at
  p, no later trade at or above p + row; for heavy selling, none below p. Book rule (where the collector
  keeps the order book, open bar only): heavy volume >= refill ratio x the largest resting size seen
  at p on the passive side while p still shows resting size: the level refilled. Each zone carries its
  evidence (volume, mean row volume, multiple, window, book sizes) and the parameters used.
- **CVD divergence**: swing highs/lows are bars whose high (low) is strictly above (below) the
  `divergence_pivot_bars` bars on each side; for consecutive swing highs, regular bearish when price
  makes a higher high and CVD a lower one (hidden: the reverse); for swing lows, regular bullish when
  price makes a lower low and CVD a higher one.
- **Large trades**: trades of at least `large_trade_min_size`, counted per bar and listed.
- **Coverage**: as for profiles: the minutes missing, and whether the newest came from the live stream.
- **Stream** (`get_order_flow_stream`): updates of the current bar after each trade batch, with a
  sequence number; the `cursor` resumes after the last update seen (missed updates are replayed while
  the service still holds them, otherwise the next answer starts with a snapshot).
"""
