"""Protobuf wire-format pieces for messages we assemble from already-serialized parts (stored bars,
batches), which saves re-encoding on hot paths."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: int, payload: bytes) -> bytes:
    """One length-delimited field (`tag` is the whole key byte, e.g. 0x12 for field 2)."""
    return bytes((tag,)) + varint(len(payload)) + payload
