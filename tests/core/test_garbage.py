"""settle_garbage_collector: what start-up left is frozen (full collections skip it) and full
collections come at the pace asked for."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from marketdata.core.garbage import settle_garbage_collector


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_left_out_of_later_collections_and_full_ones_come_rarer() -> None:
    start_up = [[n] for n in range(1000)]  # objects that live as long as the process
    young, middle, _ = gc.get_threshold()
    settle_garbage_collector(full_every=250)
    walked = {id(o) for o in gc.get_objects()}  # what a full collection would visit now
    assert not any(id(o) in walked for o in start_up)
    later = [[n] for n in range(10)]
    assert all(id(o) in {id(x) for x in gc.get_objects()} for o in later)  # new objects are collected
    assert gc.get_threshold() == (young, middle, 250)
