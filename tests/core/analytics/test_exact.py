from __future__ import annotations

from decimal import Decimal, localcontext

from hypothesis import given
from hypothesis import strategies as st

from marketdata.core.analytics.exact import format_scaled, format_volume, rescale, to_units, volume_units

plain = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**12),
    st.text("0123456789", max_size=18),
)


@given(plain)
def test_volume_units_round_trip_exactly(text: str) -> None:
    units = volume_units(text)
    with localcontext() as ctx:
        ctx.prec = 100
        _check_volume(text, units)


def _check_volume(text: str, units: int) -> None:
    assert Decimal(units).scaleb(-18) == Decimal(text)
    assert Decimal(format_volume(units)) == Decimal(text)
    assert not format_volume(units).endswith(".")


@given(st.integers(-(10**30), 10**30), st.integers(0, 20))
def test_format_scaled_is_canonical(units: int, scale: int) -> None:
    text = format_scaled(units, scale)
    with localcontext() as ctx:
        ctx.prec = 100
        assert Decimal(text) == Decimal(units).scaleb(-scale)
    assert "." not in text or not text.endswith("0")


@given(plain, st.integers(0, 18))
def test_to_units_floors(text: str, decimals: int) -> None:
    units = to_units(text, decimals)
    with localcontext() as ctx:
        ctx.prec = 100
        exact = Decimal(text).scaleb(decimals)
        assert units == int(exact.to_integral_value(rounding="ROUND_FLOOR"))
    assert rescale(units, decimals, decimals + 2) == units * 100
