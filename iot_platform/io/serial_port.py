"""Serial ports: opening them, reading them in bulk, and what to say when that fails.

Every port is opened with ``serial.serial_for_url``, so a USB device path
(``/dev/ttyACM0``), a pseudo-terminal, ``socket://host:port``,
``rfc2217://host:port`` and ``loop://`` all go through the same code.

Failures to open are turned into a :class:`PortError` whose message says what
to do (join the ``dialout`` group, close the other program, check the cable);
``retryable`` tells the capture loop whether waiting can help (a device that
is unplugged or a server that is down) or not (an unsupported baud rate).
:class:`RetrySchedule` spaces the retries: at once, then short polls, so a
replugged device is read again within a fraction of a second of its return.
A device port is opened without pyserial's flush of the input queue: bytes
the device sent between its return and the reopen are readings, not noise.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import select
import stat
import termios
from collections.abc import Iterator
from dataclasses import dataclass

import serial
import serial.tools.list_ports

log = logging.getLogger(__name__)

# The rates of the Arduino IDE's serial monitor (plus the common 14400/28800).
SUPPORTED_BAUD_RATES: tuple[int, ...] = (
    300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600, 74880,
    115200, 230400, 250000, 460800, 500000, 921600, 1000000, 2000000,
)  # fmt: skip

URL_SCHEMES = ("socket://", "rfc2217://", "loop://", "spy://", "hwgrep://", "alt://", "cp2110://")
READ_CHUNK = 65536


class PortError(Exception):
    """A port that cannot be opened; the message says what to do about it.

    ``kind`` is one of ``not_found``, ``permission``, ``busy``, ``refused``,
    ``not_a_tty``, ``invalid``, ``baud``, ``lost`` (after a disconnect), ``other``.
    """

    def __init__(self, message: str, *, kind: str, retryable: bool):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


def check_baud(baud: int) -> int:
    if baud not in SUPPORTED_BAUD_RATES:
        raise PortError(
            f"baud rate {baud} is not supported; expected one of {', '.join(map(str, SUPPORTED_BAUD_RATES))}",
            kind="baud",
            retryable=False,
        )
    return baud


def is_url(port: str) -> bool:
    return "://" in port


class _KeepInputSerial(serial.Serial):
    """A device port whose ``open()`` keeps the bytes already waiting in its input queue.

    pyserial flushes the input on open. After an unplug/replug the device may
    have printed lines before capture got the port open again; flushing them
    was part of what a replug lost.
    """

    _opening = False

    def open(self) -> None:
        self._opening = True
        try:
            super().open()
        finally:
            self._opening = False

    def _reset_input_buffer(self) -> None:
        if not self._opening:
            super()._reset_input_buffer()


def open_port(port: str, baud: int, *, timeout: float = 0.1) -> serial.SerialBase:
    """Open ``port`` (a device path or a pyserial URL) for reading, exclusively where possible."""
    check_baud(baud)
    try:
        if not is_url(port) and hasattr(serial.Serial, "_reset_input_buffer"):  # POSIX device path
            return _KeepInputSerial(port, baudrate=baud, timeout=timeout, exclusive=True)
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout, exclusive=True)
    except ValueError as exc:  # an unknown URL scheme, or a setting the port refuses
        if is_url(port) and "protocol" in str(exc):
            raise PortError(
                f"port {port!r} is not a device path or a supported URL; expected e.g. /dev/ttyACM0, "
                f"{', '.join(URL_SCHEMES[:3])}",
                kind="invalid",
                retryable=False,
            ) from exc
        raise PortError(f"cannot open {port}: {exc}", kind="invalid", retryable=False) from exc
    except serial.SerialException as exc:
        raise describe_open_error(port, exc) from exc
    except OSError as exc:
        raise describe_open_error(port, exc) from exc


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number behind ``exc`` (pyserial keeps it in ``errno`` or the chained cause)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(getattr(cur, "errno", None), int):
            return cur.errno  # type: ignore[union-attr]
        if isinstance(cur, termios.error) and cur.args and isinstance(cur.args[0], int):
            return cur.args[0]
        cur = cur.__cause__ or cur.__context__
    return None


def describe_open_error(port: str, exc: BaseException) -> PortError:
    """Turn an exception from opening ``port`` into a :class:`PortError` a person can act on."""
    code = _errno_of(exc)
    text = str(exc)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) and not is_url(port):
        present = ", ".join(_describe_ports()) or "none"
        return PortError(
            f"serial port {port} not found (ports present: {present}); check the cable and the port name",
            kind="not_found",
            retryable=True,
        )
    if code in (errno.EACCES, errno.EPERM):
        return PortError(permission_message(port), kind="permission", retryable=True)
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return PortError(
            f"serial port {port} is in use by another program (an IDE serial monitor, another capture?); "
            "close it and try again",
            kind="busy",
            retryable=True,
        )
    if code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT) or (
        is_url(port) and ("refused" in text or "timed out" in text)
    ):
        return PortError(
            f"cannot connect to {port}: {_reason(exc)}; is the device server running?",
            kind="refused",
            retryable=True,
        )
    if code in (errno.ENOTTY, errno.EINVAL) and not is_url(port):
        return PortError(
            f"{port} is not a serial port ({_reason(exc)}); expected a tty such as /dev/ttyUSB0 or /dev/ttyACM0",
            kind="not_a_tty",
            retryable=False,
        )
    return PortError(f"cannot open serial port {port}: {_reason(exc)}", kind="other", retryable=True)


def _reason(exc: BaseException) -> str:
    code = _errno_of(exc)
    return os.strerror(code) if code else str(exc)


def permission_message(port: str) -> str:
    owner = ""
    group = None
    try:
        st = os.stat(port)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        owner = f" (group {group}, mode {stat.filemode(st.st_mode)})"
    except OSError:
        pass
    join = group if group not in (None, "root") else "dialout"
    return (
        f"permission denied opening {port}{owner}: add your user to the group that owns it, "
        f"e.g. `sudo usermod -aG {join} $USER` (the group is dialout on Debian/Ubuntu, uucp on Arch), "
        "then log out and back in"
    )


def _describe_ports() -> Iterator[str]:
    try:
        ports = sorted(serial.tools.list_ports.comports(), key=lambda p: p.device)
    except Exception:  # listing is a courtesy; never let it hide the real error
        return iter(())
    return (f"{p.device} ({p.description})" if p.description and p.description != "n/a" else p.device for p in ports)


def read_chunk(port: serial.SerialBase) -> bytes:
    """Whatever the port has, in one call: up to its timeout for the first byte.

    Reading ``in_waiting`` bytes at once (instead of ``readline()``, which
    reads one byte per call) is what lets capture keep up with a flood.
    """
    if not _counts_bytes(port):
        return _read_socket(port)
    n = port.in_waiting
    if n:
        return port.read(min(n, READ_CHUNK))
    first = port.read(1)  # wait (up to the timeout) for data to start
    if not first:
        return b""
    n = port.in_waiting
    return first + port.read(min(n, READ_CHUNK)) if n else first


def _counts_bytes(port: serial.SerialBase) -> bool:
    return not type(port).__module__.endswith("protocol_socket")


def _read_socket(port: serial.SerialBase) -> bytes:
    """One ``recv`` on a ``socket://`` port.

    pyserial's ``read(n)`` on a socket keeps receiving until ``n`` bytes or
    the timeout, and when the peer closes in between it raises and drops
    the bytes it had already received; its ``in_waiting`` is only 0 or 1.
    A single ``recv`` after ``select`` loses nothing and returns at once.
    """
    sock = getattr(port, "_socket", None)
    if sock is None:  # a pyserial without the attribute: fall back to its read
        return port.read(READ_CHUNK)
    ready, _, _ = select.select([sock], [], [], port.timeout)
    if not ready:
        return b""
    try:
        data = sock.recv(READ_CHUNK)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError as exc:
        raise serial.SerialException(f"read failed: {exc}") from exc
    if not data:
        raise serial.SerialException("socket disconnected")
    return data


@dataclass
class RetrySchedule:
    """When to try a lost port again: after ``first`` seconds, then every ``interval``, growing x``factor`` up to ``maximum``.

    The first retry is almost immediate (a TCP server restarting, a USB
    re-enumeration); after that the port is polled at a short interval
    capped at ``maximum``, so capture reopens it within ``maximum`` seconds
    of its return however long it was away. Opening a missing path or a
    refused socket costs microseconds, so a short cap is cheap.
    """

    first: float = 0.01
    interval: float = 0.05
    maximum: float = 0.25
    factor: float = 2.0
    attempts: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.first and 0 < self.interval <= self.maximum) or self.factor < 1:
            raise ValueError(
                f"retry first {self.first!r}, interval {self.interval!r} and maximum {self.maximum!r} must satisfy "
                f"0 < first and 0 < interval <= maximum, and factor {self.factor!r} must be at least 1"
            )

    def next_delay(self) -> float:
        if self.attempts == 0:
            delay = self.first
        else:
            delay = min(self.interval * self.factor ** (self.attempts - 1), self.maximum)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
