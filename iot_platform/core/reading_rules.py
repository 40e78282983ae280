"""The rules every reading obeys, whatever way it arrives (a serial line or an imported column).

What a sensor id, a number and a sequence number may look like, the tokens
that mean "no value", the reject codes, the error types and their wording,
one :class:`Reading`, and the small helpers the vectorized checks share
(:class:`Rejections`, :func:`np_bool`). The serial line protocol
(``core.serial_protocol``), the import column validator
(``core.import_columns``) and the timestamp parser (``core.timestamps``) all
build on these, so a value is refused with the same words on every path.

No pyserial, no Dagster, no environment variables here (house style rule 2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.schemas import INGEST_LIMITS, METRICS, VALID_RANGE

FIELDS: tuple[str, ...] = ("sensor_id", "seq", "ts", *METRICS)

# The firmware's rule for SENSOR_ID: short, no separators, no spaces.
SENSOR_ID_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
SENSOR_ID_ALLOWED = "1 to 64 characters from A-Z a-z 0-9 _ . : -"
# A plain decimal number. Both Python's float() and Arrow's parser read every
# string this matches to the same double, which is what keeps the fast path
# and parse_line in agreement. NaN, inf, '1_000' and ' 1' do not match.
NUMBER_PATTERN = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
SEQ_PATTERN = r"[0-9]{1,18}"  # always fits an int64
SEQ_ALLOWED = "a whole number from 0 to 999999999999999999"

SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)
NUMBER_RE = re.compile(NUMBER_PATTERN)
SEQ_RE = re.compile(SEQ_PATTERN)

# Text an imported file uses for "no value" (pandas writes '', R writes NA).
MISSING_TOKENS: tuple[str, ...] = ("", "NA", "N/A", "null", "NULL", "None")
NONFINITE_TOKENS = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})

REJECT_CODES: dict[str, str] = {
    "empty": "an empty line",
    "decode": "bytes that are not UTF-8 text",
    "incomplete": "a line cut off by a disconnect or by stopping, before its end of line",
    "fragment": "the start of a cut line glued to a complete reading (the reading was kept)",
    "too_long": "a line longer than the framing limit without an end of line",
    "field_count": "a CSV line with the wrong number of fields",
    "quote": "a CSV line with an unclosed quote (a value may not span lines)",
    "syntax": "a key=value or JSON line that does not parse",
    "sensor_id": "a missing or malformed sensor id",
    "seq": "a malformed sequence number",
    "ts": "a malformed or out-of-range timestamp",
    "not_a_number": "a metric value that is not a number",
    "non_finite": "NaN or infinity",
    "out_of_limits": "a value outside INGEST_LIMITS (cannot be a measurement)",
    "no_values": "a line or row without any metric value",
}


class ParseError(ValueError):
    """A line or value that is not a reading.

    ``code`` is a stable category (a key of :data:`REJECT_CODES`), ``field``
    and ``value`` say what was wrong; the message says what is allowed.
    """

    def __init__(self, message: str, *, code: str, field: str | None = None, value: object = None):
        super().__init__(message)
        self.code = code
        self.field = field
        self.value = value


class DecodeError(ParseError):
    """The line's bytes are not text (wrong baud rate, noise on the wire)."""


class FramingError(ParseError):
    """The line's structure is wrong: empty, cut, wrong field count, bad syntax."""


class FieldError(ParseError):
    """One field's value is not allowed (sensor id, seq, timestamp, a metric)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One parsed reading. ``ts`` is the device's time (UTC) when the line had one."""

    sensor_id: str
    seq: int | None = None
    ts: dt.datetime | None = None
    temperature: float | None = None
    humidity: float | None = None
    pressure: float | None = None
    vibration: float | None = None
    battery_level: float | None = None


assert tuple(f.name for f in dataclasses.fields(Reading))[3:] == METRICS, "Reading must list METRICS in order"


# -- messages (one wording for the per-line and the vectorized paths) ----------


def msg_sensor_id(value: object) -> str:
    return f"sensor_id {value!r} is not valid; expected {SENSOR_ID_ALLOWED}"


def msg_seq(value: object) -> str:
    return f"seq {value!r} is not valid; expected {SEQ_ALLOWED}"


def msg_not_number(name: str, value: object) -> str:
    return f"{name} {value!r} is not a number; expected a decimal number such as 23.5"


def msg_non_finite(name: str, value: object) -> str:
    return f"{name} {value!r} is not a finite number; NaN and infinity are rejected"


def msg_limits(name: str, value: float) -> str:
    lo, hi = INGEST_LIMITS[name]
    vlo, vhi = VALID_RANGE[name]
    return (
        f"{name} {value!r} is outside the ingest limits {lo!r} to {hi!r} "
        f"(values outside the valid range {vlo!r} to {vhi!r} but inside these limits are kept)"
    )



MSG_NO_VALUES = "no metric values; expected at least one of " + ", ".join(METRICS)


# -- single values -------------------------------------------------------------


def check_sensor_id(value: str) -> str:
    if not SENSOR_ID_RE.fullmatch(value):
        raise FieldError(msg_sensor_id(value), code="sensor_id", field="sensor_id", value=value)
    return value


def parse_number(name: str, text: str, *, scale: float = 1.0, offset: float = 0.0) -> float:
    """``text`` as the value of metric ``name``, checked against ``INGEST_LIMITS``."""
    if not NUMBER_RE.fullmatch(text):
        code, msg = (
            ("non_finite", msg_non_finite(name, text))
            if text.lower() in NONFINITE_TOKENS
            else ("not_a_number", msg_not_number(name, text))
        )
        raise FieldError(msg, code=code, field=name, value=text)
    value = float(text)
    if scale != 1.0 or offset != 0.0:
        value = value * scale + offset
    return check_metric(name, value, text)


def check_metric(name: str, value: float, shown: object = None) -> float:
    if not math.isfinite(value):
        raise FieldError(msg_non_finite(name, value if shown is None else shown), code="non_finite", field=name, value=value)
    lo, hi = INGEST_LIMITS[name]
    if not lo <= value <= hi:
        raise FieldError(msg_limits(name, value), code="out_of_limits", field=name, value=value)
    return value


def parse_seq(text: str) -> int:
    if not SEQ_RE.fullmatch(text):
        raise FieldError(msg_seq(text), code="seq", field="seq", value=text)
    return int(text)



def mapped_keys(pairs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["temperature=temp_c", ...]`` as ``(("temperature", "temp_c"), ...)``, checked."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        name, sep, key = pair.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise ValueError(f"mapping {pair!r} is not FIELD=NAME; expected e.g. temperature=temp_c")
        if name not in FIELDS:
            raise ValueError(f"mapping {pair!r}: field {name!r} is not known; expected one of {', '.join(FIELDS)}")
        if any(name == n for n, _ in out):
            raise ValueError(f"mapping {pair!r}: field {name!r} is mapped twice")
        out.append((name, key))
    return tuple(out)


class Rejections:
    """The first reason each row of a chunk fails, filled check by check."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, dtype=bool)
        self.reasons: dict[int, tuple[str, str]] = {}

    def add(self, mask: np.ndarray, code: str, message: Callable[[int], str]) -> None:
        new = mask & ~self.bad
        if not new.any():
            return
        for i in np.flatnonzero(new).tolist():
            self.reasons[i] = (code, message(i))
        self.bad |= new


def np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as numpy, nulls as False."""
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def trimmed_text(arr: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(arr.cast(pa.large_string()))


def repeated_strings(values: list[str], counts: np.ndarray) -> pa.Array:
    """A string array of ``values[0]`` ``counts[0]`` times, then ``values[1]`` ``counts[1]`` times, ...

    Built from its buffers (offsets from the lengths, data by repeating bytes):
    readings grouped by sensor come in long runs, so this is a few memory passes, where
    a dictionary cast or take gathers string by string.
    """
    encoded = [v.encode() for v in values]
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    size = int(lengths @ counts) if n else 0
    if size >= 2**31:
        raise ValueError(f"{n} strings of {size} bytes exceed a string column's 2 GiB")
    if len(encoded) > 1 and n and (lengths == lengths[0]).all() and lengths[0]:
        # ids of one width (sensor_001 ...): evenly spaced offsets, and the bytes one np.repeat of
        # the ids' rows (joining repeated bytes objects copies the column twice)
        offsets = np.arange(n + 1, dtype=np.int32)
        offsets *= int(lengths[0])
        data = np.repeat(np.frombuffer(b"".join(encoded), np.uint8).reshape(len(encoded), -1), counts, axis=0)
    else:
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.repeat(lengths, counts), out=offsets[1:])
        offsets = offsets.astype(np.int32)
        data = b"".join(e * int(c) for e, c in zip(encoded, counts))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
