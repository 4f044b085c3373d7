"""Exact decimal arithmetic shared by storage footprints and the analytics: integers at fixed scales.

Prices are integers at a chosen number of decimals (truncating extra digits, which for the positive
prices of an exchange is the floor); volumes are integers at VOLUME_SCALE (18) decimals. Nothing here
touches a binary float.
"""

from __future__ import annotations

import re

VOLUME_SCALE = 18
MAX_DECIMALS = 18
_POW10: list[int] = [10**i for i in range(64)]
_PAD = ["0" * (VOLUME_SCALE - i) for i in range(VOLUME_SCALE + 1)]  # zeros after i decimals

_PLAIN = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,18})?")


def is_plain_decimal(text: str) -> bool:
    """Digits with an optional fraction of at most 18 digits: no sign, exponent, spaces or NaN."""
    return _PLAIN.fullmatch(text) is not None


def decimals_of(text: str) -> int:
    _, _, fraction = text.partition(".")
    return len(fraction)


def to_units(text: str, decimals: int) -> int:
    """A plain decimal as an integer count of 10**-decimals, truncating extra digits (= floor, >= 0)."""
    whole, _, fraction = text.partition(".")
    if decimals == 0:
        return int(whole)
    if len(fraction) >= decimals:
        return int(whole + fraction[:decimals])
    return int(whole + fraction + "0" * (decimals - len(fraction)))


def volume_units(text: str) -> int:
    """A plain decimal size as an integer count of 10**-18."""
    whole, _, fraction = text.partition(".")
    if len(fraction) > VOLUME_SCALE:  # never from validated input; truncate (= floor) rather than mis-scale
        return int(whole + fraction[:VOLUME_SCALE])
    # the digits padded to 18 decimals, read at once (a cold 30-day order flow parses ~190k sizes)
    return int(f"{whole}{fraction}{_PAD[len(fraction)]}")


def format_units(units: int, decimals: int) -> str:
    """Integer units of 10**-decimals with exactly `decimals` digits after the point."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    text = str(abs(units)).rjust(decimals + 1, "0")
    return f"{sign}{text[:-decimals]}.{text[-decimals:]}"


def format_scaled(units: int, scale: int) -> str:
    """Canonical decimal of units at 10**-scale: no trailing zeros, no point for whole numbers."""
    if units == 0:
        return "0"
    sign = ""
    if units < 0:
        sign, units = "-", -units
    if scale == 0:
        return f"{sign}{units}"
    whole, fraction = divmod(units, _POW10[scale] if scale < len(_POW10) else 10**scale)
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(fraction).rjust(scale, '0').rstrip('0')}"


def format_volume(units: int) -> str:
    """Canonical decimal: no trailing zeros, no point for whole numbers ("1.5", "2", "0.001")."""
    return format_scaled(units, VOLUME_SCALE)


def parse_tick(text: str) -> tuple[int, int]:
    """(units, decimals) of a tick size like "0.01" or "0.10"; ValueError unless a plain decimal > 0."""
    if not is_plain_decimal(text):
        raise ValueError(f"tick size {text!r} is not a plain decimal")
    decimals = decimals_of(text)
    units = to_units(text, decimals)
    if units <= 0:
        raise ValueError(f"tick size {text!r} must be > 0")
    return units, decimals


def rescale(units: int, from_decimals: int, to_decimals: int) -> int:
    """Units at one number of decimals expressed at another (floor when dropping digits, units >= 0)."""
    shift = to_decimals - from_decimals
    factor: int = 10 ** abs(shift)
    return units * factor if shift >= 0 else units // factor
