"""The bounded buffer between the port reader and the writer: drop policies and counters."""

from __future__ import annotations

import threading

import pytest
from conftest_serial import wait_until

from iot_platform.core.buffer import BoundedBuffer, BufferClosed, DropPolicy


def test_drop_oldest_keeps_the_newest_items():
    b = BoundedBuffer(5, "drop_oldest")
    assert b.put_many([1, 2, 3]) == 0
    assert b.put_many([4, 5, 6, 7]) == 2
    assert b.get_many(10) == [3, 4, 5, 6, 7]
    assert b.put_many(list(range(10, 22))) == 7  # more than the capacity in one go
    assert b.get_many(10) == [17, 18, 19, 20, 21]
    s = b.stats()
    assert (s.capacity, s.size, s.put, s.dropped) == (5, 0, 19, 9)


def test_drop_newest_keeps_what_is_buffered():
    b = BoundedBuffer(5, DropPolicy.DROP_NEWEST)
    assert b.put_many([1, 2, 3]) == 0
    assert b.put_many([4, 5, 6, 7]) == 2
    assert b.put_many([8]) == 1
    assert b.get_many(2) == [1, 2]
    assert b.get_many(10) == [3, 4, 5]
    assert b.stats().dropped == 3


def test_block_waits_for_room_and_loses_nothing():
    b = BoundedBuffer(3, "block")
    done = threading.Event()

    def producer():
        b.put_many(list(range(10)))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    got: list[int] = []
    while len(got) < 10:
        got += b.get_many(2, timeout=5)
    t.join(5)
    assert done.is_set()
    assert got == list(range(10))
    assert b.stats().dropped == 0
    assert b.stats().peak == 3


def test_block_with_timeout_drops_what_does_not_fit():
    b = BoundedBuffer(2, "block")
    assert b.put_many([1, 2, 3, 4], timeout=0.01) == 2
    assert b.get_many(5) == [1, 2]
    assert b.stats().dropped == 2


def test_close_wakes_a_blocked_producer_and_keeps_items_readable():
    b = BoundedBuffer(1, "block")
    b.put_many([1])
    errors: list[BaseException] = []

    def producer():
        try:
            b.put_many([2])
        except BufferClosed as exc:
            errors.append(exc)

    t = threading.Thread(target=producer)
    t.start()
    wait_until(lambda: t.is_alive(), "the producer to start")
    b.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1
    assert b.get_many(5) == [1]
    assert b.get_many(5, timeout=5) == []  # closed and empty: returns at once
    with pytest.raises(BufferClosed):
        b.put_many([3])


def test_utilization_and_peak_since_last_look():
    b = BoundedBuffer(10)
    b.put_many(list(range(9)))
    b.get_many(5)
    s = b.stats(reset_peak=True)
    assert (s.utilization, s.peak_utilization) == (0.4, 0.9)
    s = b.stats()
    assert (s.utilization, s.peak_utilization) == (0.4, 0.4)


def test_get_many_times_out_empty():
    assert BoundedBuffer(3).get_many(3, timeout=0.01) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0,), "buffer capacity 0 is not valid; expected a whole number of at least 1"),
        ((5, "lossy"), "drop policy 'lossy' is not supported; expected one of drop_oldest, drop_newest, block"),
    ],
)
def test_invalid_buffer_settings(args, message):
    with pytest.raises(ValueError) as info:
        BoundedBuffer(*args)
    assert str(info.value) == message
