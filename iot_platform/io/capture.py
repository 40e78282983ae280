"""Capture a serial port into the landing zone until told to stop.

Two threads and a bounded buffer::

    reader thread:  port --read_chunk--> LineSplitter --(line_no, received_at, bytes)--> BoundedBuffer
    writer (caller's thread):  BoundedBuffer --LineParser.parse_batch--> pending rows --every rotate_seconds--> SpoolWriter
                                                                      \\--> QuarantineWriter

The reader only reads, frames lines and time-stamps them, so it keeps up with
the port; parsing and Parquet writing happen in the writer, in batches. When
the writer falls behind, the buffer's drop policy decides what is lost, and
the periodic metrics line says so.

Timestamps: ``received_at`` is the host's UTC time when the chunk holding the
line was read; lines of one chunk get consecutive microseconds, so
``received_at`` is strictly increasing per port and keeps arrival order (a
clock stepped back by more than a second restarts from the new time). The
per-port line number (``line`` in quarantine records) counts every framed
line since the capture started.

Guarantees: on :meth:`Capture.stop` (SIGINT/SIGTERM in the CLI) the reader
stops, the writer parses everything buffered and writes it, so nothing that
was read is lost; an unfinished last line goes to quarantine as
``incomplete``. A hard crash (SIGKILL, power loss) loses what was read since
the last rotation (at most ``rotate_seconds``) plus what was still in the
buffer; every file that had appeared is complete.

A reading glued behind the start of a cut line (a device that reset
mid-line: ``sensor_001,1sensor_001,17,...``) is kept and only the fragment's
bytes are quarantined (code ``fragment``), when the line format starts with
the sensor id and that id has been seen before. A line longer than
``max_line_bytes`` is quarantined as one ``too_long`` record with all its
bytes (bytes that never end are cut every 64 x ``max_line_bytes``).

A port that disappears (USB unplugged, a TCP server restarting) or refuses to
open again is retried at once and then polled every ``backoff_initial``
seconds, growing to at most ``backoff_max`` (0.05 s to 0.25 s by default),
and capture resumes on the same stream when it returns. A device path is
reopened without flushing its input, so lines the device printed between its
return and the reopen are read too. What can still be lost: bytes the device
sent while its port did not exist (unplugged), and what a USB serial adapter
drops before any program opens it (the kernel keeps no queue for a closed
USB tty).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import pyarrow as pa
import serial

from iot_platform.core.buffer import WARN_UTILIZATION, BoundedBuffer, BufferClosed, DropPolicy
from iot_platform.core.reading_rules import REJECT_CODES
from iot_platform.core.serial_protocol import FRAGMENT_REASON, LineFormat, LineParser, LineSplitter
from iot_platform.io.landing import QuarantineWriter, SpoolWriter, serial_source, serial_stream, slug
from iot_platform.io.serial_port import PortError, RetrySchedule, check_baud, open_port, read_chunk

log = logging.getLogger("iot_platform.capture")

_BATCH = 50_000  # most lines parsed in one go
_MIN_BATCH_INTERVAL = 0.05  # below the batch size, parse at most this often (small batches are costly)
_POLL = 0.05  # the longest a wait goes without looking for a stop request
# what the reader found instead of a line: (reject code, reason)
_FRAMING = {
    "too_long": ("too_long", "line longer than {max} bytes without an end of line (wrong baud rate or binary data?)"),
    "lost": ("incomplete", "incomplete line: the port was lost before its end of line"),
    "stopped": ("incomplete", "incomplete line: capture stopped before its end of line"),
}


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture and how; validates itself on construction."""

    port: str
    baud: int = 9600
    line_format: LineFormat = field(default_factory=LineFormat)
    buffer_size: int = 100_000
    drop_policy: DropPolicy = DropPolicy.DROP_OLDEST
    rotate_seconds: float = 5.0
    max_rows_per_file: int = 500_000
    metrics_interval: float = 10.0
    read_timeout: float = 0.1
    max_line_bytes: int = 4096
    wait_for_port: bool = False
    reconnect_first: float = 0.01  # the first retry after a lost port: almost at once
    backoff_initial: float = 0.05  # then poll this often, doubling ...
    backoff_max: float = 0.25  # ... up to this (the longest a returned port waits to be reopened)
    stream: str | None = None

    def __post_init__(self) -> None:
        if not self.port:
            raise ValueError("a port is required, e.g. /dev/ttyACM0 or socket://host:port")
        check_baud(self.baud)
        object.__setattr__(self, "drop_policy", DropPolicy.parse(self.drop_policy))
        for name in (
            "rotate_seconds", "metrics_interval", "read_timeout", "reconnect_first", "backoff_initial", "backoff_max",
        ):  # fmt: skip
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} {value!r} is not valid; expected a positive number of seconds")
        for name in ("buffer_size", "max_rows_per_file", "max_line_bytes"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} {value!r} is not valid; expected a whole number of at least 1")
        if self.stream is not None and self.stream != slug(self.stream):
            raise ValueError(f"stream {self.stream!r} is not a slug; expected e.g. {slug(self.stream)!r}")
        if self.backoff_initial > self.backoff_max:
            raise ValueError(
                f"backoff_initial {self.backoff_initial!r} is not valid; expected at most backoff_max {self.backoff_max!r}"
            )


@dataclass
class CaptureStats:
    """Counters since the capture started (the writer and the reader each own theirs)."""

    bytes: int = 0
    lines: int = 0  # framed lines, including comments and rejects
    readings: int = 0  # lines that parsed into a reading
    spooled: int = 0  # readings in published landing files
    comments: int = 0  # '#' lines (banners, command replies)
    rejected: int = 0
    rejects_by_code: collections.Counter = field(default_factory=collections.Counter)
    dropped: int = 0  # lines discarded by the buffer's drop policy
    files: int = 0
    quarantine_files: int = 0
    disconnects: int = 0
    reconnects: int = 0
    open_failures: int = 0  # attempts to (re)open the port that failed


class Capture:
    """One port captured into ``landing_root/<stream>``; :meth:`run` blocks until :meth:`stop`."""

    def __init__(
        self,
        config: CaptureConfig,
        landing_root: Path,
        *,
        stop: threading.Event | None = None,
        opener: Callable[[], serial.SerialBase] | None = None,
    ):
        """``opener`` replaces :func:`open_port` (e.g. to hand in an already open ``loop://`` port)."""
        self.config = config
        self._opener = opener
        self.landing_root = Path(landing_root)
        self.stop_event = stop if stop is not None else threading.Event()
        self._stop_requested = False  # set by stop(); see there
        self.connected = threading.Event()  # set while the port is open
        self.stats = CaptureStats()
        self.source = serial_source(config.port)
        self.stream = config.stream or serial_stream(config.port)
        self.last_metrics: dict[str, float] = {}
        self._parser = LineParser(config.line_format)
        self._buffer: BoundedBuffer[tuple] = BoundedBuffer(config.buffer_size, config.drop_policy)
        self._splitter = LineSplitter(config.max_line_bytes)
        self._spool = SpoolWriter(self.landing_root, self.stream)
        self._quarantine = QuarantineWriter(self.landing_root, self.stream)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._line_no = 0
        self._last_us = 0
        self._reader_error: BaseException | None = None
        self._metrics_at = time.monotonic()
        self._metrics_base = CaptureStats()

    def stop(self) -> None:
        """Ask :meth:`run` to stop reading, write everything read, and return.

        Safe in a signal handler: it only sets a flag. (``Event.set()`` takes a
        lock, and a handler runs in the main thread, which may hold that very
        lock inside ``Event.wait()``: a deadlock.) Every wait in the capture is
        at most :data:`_POLL` long and looks at the flag.
        """
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested or self.stop_event.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``, in short slices; True as soon as a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.stop_event.wait(min(left, _POLL))
        return True

    # -- the whole run ---------------------------------------------------------------
    def run(self) -> CaptureStats:
        """Capture until :meth:`stop`; returns the final counters.

        Raises :class:`PortError` when the port cannot be opened at the start
        (unless ``wait_for_port``, then it waits with backoff).
        """
        port = self._open_first()
        if port is None:  # stopped while waiting for the port
            return self.stats
        log.info(
            "capturing %s at %d baud (%s) into %s; SIGINT or SIGTERM stops and flushes",
            self.config.port,
            self.config.baud,
            self.config.line_format.describe(),
            self.landing_root / self.stream,
        )
        reader = threading.Thread(target=self._read_loop, args=(port,), name="capture-reader", daemon=True)
        reader.start()
        try:
            self._write_loop(reader)
        except BaseException:
            self.stop_event.set()
            self._buffer.close()
            reader.join(timeout=5)
            self._quarantine.discard()
            raise
        reader.join()
        if self._reader_error is not None:
            raise self._reader_error
        self.stats.dropped = self._buffer.stats().dropped
        s = self.stats
        log.info(
            "stopped %s: %d lines, %d readings in %d files, %d rejected, %d dropped, %d disconnects",
            self.config.port, s.lines, s.spooled, s.files, s.rejected, s.dropped, s.disconnects,
        )  # fmt: skip
        return s

    def _open(self) -> serial.SerialBase:
        if self._opener is not None:
            return self._opener()
        return open_port(self.config.port, self.config.baud, timeout=self.config.read_timeout)

    def _open_first(self) -> serial.SerialBase | None:
        try:
            port = self._open()
        except PortError as exc:
            if not (self.config.wait_for_port and exc.retryable):
                raise
            self.stats.open_failures += 1
            port = self._reopen(exc)
            if port is None:
                return None
        self.connected.set()
        return port

    def _reopen(self, first_error: PortError) -> serial.SerialBase | None:
        """Open the port again: at once, then short polls (see :class:`RetrySchedule`); ``None`` if stopped first."""
        cfg = self.config
        backoff = RetrySchedule(cfg.reconnect_first, cfg.backoff_initial, cfg.backoff_max)
        since = time.monotonic()
        error: BaseException = first_error
        log.warning("%s: %s; reopening it as soon as it is back (polling every %.3g s)", cfg.port, error, cfg.backoff_max)
        next_note = since + 10.0
        while not self.stopping:
            if self._sleep(backoff.next_delay()):
                return None
            try:
                port = self._open()
            except PortError as exc:
                self.stats.open_failures += 1
                error = exc
                if time.monotonic() >= next_note:  # polls are frequent: say so every 10 s, not every time
                    log.warning("%s: still not back after %.0f s: %s", cfg.port, time.monotonic() - since, error)
                    next_note = time.monotonic() + 10.0
                continue
            log.info(
                "%s: port is back after %.1f s and %d attempts; capture resumes",
                self.config.port, time.monotonic() - since, backoff.attempts,
            )  # fmt: skip
            return port
        return None

    # -- reader thread ------------------------------------------------------------------
    def _read_loop(self, port: serial.SerialBase | None) -> None:
        lost: BaseException | None = None
        try:
            while not self.stopping:
                if port is None:
                    port = self._reopen(PortError(f"port lost ({lost})", kind="lost", retryable=True))
                    if port is None:
                        break
                    self.stats.reconnects += 1
                    self.connected.set()
                try:
                    data = read_chunk(port)
                except (serial.SerialException, OSError) as exc:
                    self.stats.disconnects += 1
                    self.connected.clear()
                    self._emit_tail("lost")
                    _close_quietly(port)
                    port, lost = None, exc
                    continue
                if data:
                    self._emit(data)
            self._emit_tail("stopped")
        except BufferClosed:
            pass
        except BaseException as exc:  # a bug: stop the capture and let run() raise it
            self._reader_error = exc
            self.stop_event.set()
        finally:
            self.connected.clear()
            if port is not None:
                _close_quietly(port)

    def _stamp(self, n: int) -> int:
        """The receive time of the first of ``n`` lines read now; lines are 1 µs apart."""
        now = time.time_ns() // 1000
        last = self._last_us
        if now > last:
            start = now
        elif last - now > 1_000_000:
            log.warning("%s: the host clock went back %.3f s", self.config.port, (last - now) / 1e6)
            start = now
        else:
            start = last + 1
        self._last_us = start + n - 1
        return start

    def _emit(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        lines, notes = self._splitter.feed(data)
        if not lines:
            return
        n = len(lines)
        start = self._stamp(n)
        first = self._line_no + 1
        self._line_no += n
        if notes:
            kinds = [notes.get(i) for i in range(n)]
        else:
            kinds = repeat(None, n)
        items = list(zip(range(first, first + n), range(start, start + n), lines, kinds))
        self.stats.lines += n
        self._buffer.put_many(items)

    def _emit_tail(self, kind: str) -> None:
        tail = self._splitter.flush()
        if tail:
            self._line_no += 1
            self.stats.lines += 1
            self._buffer.put_many([(self._line_no, self._stamp(1), tail, kind)])

    # -- writer (the caller's thread) --------------------------------------------------------
    def _write_loop(self, reader: threading.Thread) -> None:
        cfg = self.config
        now = time.monotonic()
        next_rotate = now + cfg.rotate_seconds
        next_metrics = now + cfg.metrics_interval
        self._metrics_at = now
        while True:
            if self._stop_requested and not self.stop_event.is_set():
                self.stop_event.set()  # here, not in stop(): see there
            started = time.monotonic()
            done = not reader.is_alive()  # read before the buffer, so no last item is missed
            items = self._buffer.get_many(_BATCH, timeout=_MIN_BATCH_INTERVAL)
            if items:
                self._process(items)
            now = time.monotonic()
            if self._pending_rows >= cfg.max_rows_per_file or now >= next_rotate:
                self._flush()
                next_rotate = now + cfg.rotate_seconds
            if now >= next_metrics:
                self._log_metrics(now)
                next_metrics = now + cfg.metrics_interval
            if done and not items and len(self._buffer) == 0:
                break
            if items and len(items) < _BATCH:
                # Let lines gather: parsing 1-line batches costs far more per line.
                rest = _MIN_BATCH_INTERVAL - (time.monotonic() - started)
                if rest > 0:
                    self._sleep(rest)
        self._flush()
        self._log_metrics(time.monotonic())

    def _process(self, items: list[tuple]) -> None:
        line_nos, times, raws, kinds = zip(*items)
        # (line number, received, raw, code, reason) of every refused line, written in line order
        refused: list[tuple[int, int, bytes, str, str]] = []
        if any(kinds):
            for i, kind in enumerate(kinds):
                if kind is not None:
                    code, reason = _FRAMING[kind]
                    refused.append((line_nos[i], times[i], raws[i], code, reason.format(max=self.config.max_line_bytes)))
            keep = [i for i, k in enumerate(kinds) if k is None]
            line_nos = tuple(line_nos[i] for i in keep)
            times = tuple(times[i] for i in keep)
            raws = tuple(raws[i] for i in keep)
        if raws:
            received = np.fromiter(times, dtype=np.int64, count=len(times))
            batch = self._parser.parse_batch(raws, received, self.source)
            for rej in batch.rejects:
                i = rej.index
                refused.append((line_nos[i], times[i], raws[i], rej.error.code, str(rej.error)))
            for frag in batch.fragments:  # the line's reading was kept; only its glued start is refused
                i = frag.index
                refused.append((line_nos[i], times[i], frag.raw, "fragment", FRAGMENT_REASON))
            self.stats.comments += batch.comments
            if batch.table.num_rows:
                self.stats.readings += batch.table.num_rows
                self._pending.append(batch.table)
                self._pending_rows += batch.table.num_rows
        for line_no, received_us, raw, code, reason in sorted(refused, key=lambda r: r[0]):
            self._reject(line_no, received_us, raw, code, reason)

    def _reject(self, line_no: int, received_us: int, raw: bytes, code: str, reason: str) -> None:
        assert code in REJECT_CODES, code
        self._quarantine.add(
            source=self.source, received_at_us=received_us, reason=reason, code=code, raw=raw, line=line_no
        )
        self.stats.rejected += 1
        self.stats.rejects_by_code[code] += 1

    def _flush(self) -> None:
        """Publish the pending readings and quarantine records (each file atomically)."""
        if self._pending:
            table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending, self._pending_rows = [], 0
            if self._spool.write(table) is not None:
                self.stats.files += 1
                self.stats.spooled += table.num_rows
        if self._quarantine.publish() is not None:
            self.stats.quarantine_files += 1

    def _log_metrics(self, now: float) -> None:
        s, b = self.stats, self._metrics_base
        bs = self._buffer.stats(reset_peak=True)
        s.dropped = bs.dropped
        elapsed = max(now - self._metrics_at, 1e-9)
        lines = s.lines - b.lines
        dropped = s.dropped - b.dropped
        rejected = s.rejected - b.rejected
        codes = s.rejects_by_code - b.rejects_by_code
        self.last_metrics = {
            "lines_per_s": lines / elapsed,
            "readings": s.readings - b.readings,
            "rejected": rejected,
            "dropped": dropped,
            "drop_rate": dropped / lines if lines else 0.0,
            "utilization": bs.utilization,
            "peak_utilization": bs.peak_utilization,
        }
        log.info(
            "%s: %.1f lines/s, %d readings, %d rejected%s, %d dropped (%.2f%%), buffer %.1f%% (peak %.1f%%); "
            "totals: %d bytes, %d lines, %d readings, %d files",
            self.config.port, lines / elapsed, s.readings - b.readings, rejected,
            f" ({', '.join(f'{k} {v}' for k, v in codes.most_common())})" if codes else "",
            dropped, 100 * self.last_metrics["drop_rate"], 100 * bs.utilization, 100 * bs.peak_utilization,
            s.bytes, s.lines, s.readings, s.files,
        )  # fmt: skip
        if bs.peak_utilization > WARN_UTILIZATION:
            log.warning(
                "%s: buffer reached %.0f%% of %d lines: the writer is not keeping up; policy %s %s",
                self.config.port, 100 * bs.peak_utilization, bs.capacity, self.config.drop_policy.value,
                "makes the reader wait" if self.config.drop_policy is DropPolicy.BLOCK else "drops lines when full",
            )  # fmt: skip
        if lines >= 20 and rejected == lines:
            log.warning(
                "%s: all %d lines in the last %.0f s were rejected (%s); check that --baud matches the device "
                "and --format matches what it prints",
                self.config.port, lines, elapsed, codes.most_common(1)[0][0],
            )  # fmt: skip
        self._write_metrics(bs.capacity)
        self._metrics_at = now
        self._metrics_base = CaptureStats(
            bytes=s.bytes, lines=s.lines, readings=s.readings, rejected=s.rejected,
            rejects_by_code=collections.Counter(s.rejects_by_code), dropped=s.dropped,
        )  # fmt: skip

    def _write_metrics(self, capacity: int) -> None:
        """The last interval's metrics and the totals, as ``landing/_metrics/<stream>.json`` (temp file
        + rename: a reader such as ``iot-platform dashboard`` never sees half of it)."""
        import json
        import os

        s = self.stats
        doc = {"stream": self.stream, "port": self.config.port, "written_at": time.time(), "buffer_capacity": capacity,
               "interval": self.last_metrics, "totals": {"bytes": s.bytes, "lines": s.lines, "readings": s.readings,
               "rejected": s.rejected, "dropped": s.dropped, "files": s.files, "disconnects": s.disconnects}}  # fmt: skip
        path = self.landing_root / "_metrics" / f"{self.stream}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc, sort_keys=True))
            os.replace(tmp, path)
        except OSError as exc:  # metrics are for display: never stop a capture over them
            log.warning("%s: cannot write metrics to %s: %s", self.config.port, path, exc)


def _close_quietly(port: serial.SerialBase) -> None:
    try:
        port.close()
    except Exception:  # closing a vanished device can fail; it is gone either way
        pass
