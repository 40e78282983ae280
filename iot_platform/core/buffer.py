"""A bounded buffer between a producer that cannot wait (a serial port) and a writer.

A sensor does not slow down because the disk is busy, so the buffer between
the thread that reads the port and the thread that parses and spools must be
bounded, and something must give when it is full. Three drop policies:

* ``drop_oldest`` (default): keep the newest items, discard the oldest. Fresh
  data is worth more than stale data for monitoring.
* ``drop_newest``: keep what is buffered, discard what arrives. Preserves a
  contiguous history up to the overload.
* ``block``: make the producer wait. Nothing is dropped here, but the wait
  pushes the overflow back to the OS and the device, whose buffers are small
  and drop silently, so use it where the producer can really be paused (a
  file, a socket, a flooding benchmark).

Items move in bulk (:meth:`BoundedBuffer.put_many`, :meth:`BoundedBuffer.get_many`)
so that the lock is taken once per chunk of lines, not once per line.
Counters (:class:`BufferStats`) give the utilization, its peak since the last
look, and the number of items dropped, for the capture's periodic metrics.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

WARN_UTILIZATION = 0.8  # above this, the consumer is not keeping up


class DropPolicy(str, enum.Enum):
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    BLOCK = "block"

    @classmethod
    def parse(cls, value: str | DropPolicy) -> DropPolicy:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"drop policy {value!r} is not supported; expected one of {', '.join(p.value for p in cls)}"
            ) from None


class BufferClosed(Exception):
    """Raised by :meth:`BoundedBuffer.put_many` once the buffer is closed."""


@dataclass(frozen=True)
class BufferStats:
    capacity: int
    size: int
    peak: int  # the largest size since the previous stats(reset_peak=True)
    put: int  # items offered since creation
    dropped: int  # items discarded by the policy since creation

    @property
    def utilization(self) -> float:
        return self.size / self.capacity

    @property
    def peak_utilization(self) -> float:
        return self.peak / self.capacity


class BoundedBuffer(Generic[T]):
    """A thread-safe FIFO of at most ``capacity`` items with a :class:`DropPolicy`."""

    def __init__(self, capacity: int, policy: DropPolicy | str = DropPolicy.DROP_OLDEST):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"buffer capacity {capacity!r} is not valid; expected a whole number of at least 1")
        self.capacity = capacity
        self.policy = DropPolicy.parse(policy)
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._put = 0
        self._dropped = 0
        self._peak = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_many(self, items: Sequence[T], timeout: float | None = None) -> int:
        """Add ``items`` in order; returns how many the policy dropped (old or new).

        With ``block``, waits for room (up to ``timeout`` seconds in total;
        what still does not fit then is dropped and counted). Raises
        :class:`BufferClosed` when the buffer is closed.
        """
        n = len(items)
        if n == 0:
            return 0
        with self._lock:
            if self._closed:
                raise BufferClosed("buffer closed")
            self._put += n
            dropped = 0
            if self.policy is DropPolicy.BLOCK:
                deadline = None if timeout is None else time.monotonic() + timeout
                start = 0
                while start < n:
                    room = self.capacity - len(self._items)
                    if room <= 0:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            dropped = n - start
                            break
                        self._not_full.wait(remaining)
                        if self._closed:
                            raise BufferClosed("buffer closed")
                        continue
                    chunk = items[start : start + room]
                    self._items.extend(chunk)
                    start += len(chunk)
                    self._note_size()
                    self._not_empty.notify()
            elif self.policy is DropPolicy.DROP_NEWEST:
                room = max(self.capacity - len(self._items), 0)
                if room < n:
                    dropped = n - room
                    items = items[:room]
                self._items.extend(items)
            else:  # DROP_OLDEST
                if n >= self.capacity:
                    dropped = len(self._items) + n - self.capacity
                    self._items.clear()
                    self._items.extend(items[n - self.capacity :])
                else:
                    overflow = len(self._items) + n - self.capacity
                    for _ in range(max(overflow, 0)):
                        self._items.popleft()
                    dropped = max(overflow, 0)
                    self._items.extend(items)
            self._dropped += dropped
            self._note_size()
            if self._items:
                self._not_empty.notify()
            return dropped

    def get_many(self, max_items: int, timeout: float | None = None) -> list[T]:
        """Take up to ``max_items`` of the oldest items; waits up to ``timeout`` for the first.

        Returns an empty list on timeout or when the buffer is closed and empty.
        """
        with self._lock:
            if not self._items and not self._closed:
                self._not_empty.wait(timeout)
            if not self._items:
                return []
            if max_items >= len(self._items):
                out = list(self._items)
                self._items.clear()
            else:
                popleft = self._items.popleft
                out = [popleft() for _ in range(max_items)]
            self._not_full.notify_all()
            return out

    def close(self) -> None:
        """Refuse further puts and wake every waiter; buffered items stay readable."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def stats(self, *, reset_peak: bool = False) -> BufferStats:
        with self._lock:
            s = BufferStats(self.capacity, len(self._items), self._peak, self._put, self._dropped)
            if reset_peak:
                self._peak = len(self._items)
            return s

    def _note_size(self) -> None:
        if len(self._items) > self._peak:
            self._peak = len(self._items)
