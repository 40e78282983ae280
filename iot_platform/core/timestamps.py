"""Timestamps: a device's time on a serial line, and whole timestamp columns of imported files.

* :func:`parse_timestamp` reads one device timestamp (ISO 8601, naive means
  UTC, or epoch seconds/milliseconds/microseconds); :func:`device_ts_fast`
  is its vectorized twin for the serial fast path.
* :class:`TimestampParser` reads a column of any type (timestamps, dates,
  epoch numbers, text) into UTC microseconds, vectorized, with a reason for
  every row it refuses.

No pyserial, no Dagster, no environment variables here (house style rule 2).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
import zoneinfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.reading_rules import NUMBER_PATTERN, NUMBER_RE, FieldError, Rejections, np_bool, trimmed_text

TS_UNITS: dict[str, float] = {"s": 1_000_000.0, "ms": 1_000.0, "us": 1.0}
ISO_NAIVE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
ISO_ZONED = ISO_NAIVE + r"(?:Z|[+-][0-9]{2}:[0-9]{2})"

# Timestamps a reading may carry: the platform has no data before the epoch,
# and a year beyond 2200 is a unit mistake (milliseconds read as seconds).
TS_MIN = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TS_MAX = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)
EPOCH = TS_MIN
TS_MIN_US = 0
TS_MAX_US = int((TS_MAX - EPOCH).total_seconds()) * 1_000_000
TS_ALLOWED = "ISO 8601 such as 2026-11-22T15:01:02Z, or epoch {unit}"
TS_RANGE = "1970-01-01 to 2200-01-01"


def msg_ts(value: object, unit: str = "seconds") -> str:
    return f"ts {value!r} is not a timestamp; expected {TS_ALLOWED.format(unit=unit)}"


def msg_ts_range(value: object) -> str:
    return f"ts {value!r} is outside {TS_RANGE}"



def parse_timestamp(text: str, *, unit: str = "s") -> dt.datetime:
    """A device timestamp: ISO 8601 (naive means UTC) or a number of epoch ``unit``."""
    if NUMBER_RE.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            raise FieldError(msg_ts(text, UNIT_NAMES[unit]), code="ts", field="ts", value=text)
        us = round(value * TS_UNITS[unit])
    else:
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise FieldError(msg_ts(text, UNIT_NAMES[unit]), code="ts", field="ts", value=text) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        try:
            delta = parsed - EPOCH
        except OverflowError:  # pragma: no cover - only for offsets at datetime.min/max
            raise FieldError(msg_ts_range(text), code="ts", field="ts", value=text) from None
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not TS_MIN_US <= us < TS_MAX_US:
        raise FieldError(msg_ts_range(text), code="ts", field="ts", value=text)
    return EPOCH + dt.timedelta(microseconds=us)


UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def device_ts_fast(col: pa.Array, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :func:`parse_timestamp` for strings the line regex accepted.

    Returns microseconds and an ok mask; rows not ok go through ``parse_line``
    (which then reports the exact error).
    """
    n = len(col)
    us = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    numeric = pc.match_substring_regex(col, f"^{NUMBER_PATTERN}$").to_numpy(zero_copy_only=False)
    zoned = pc.match_substring_regex(col, f"^{ISO_ZONED}$").to_numpy(zero_copy_only=False)
    naive = ~numeric & ~zoned
    if numeric.any():
        values = pc.cast(col.filter(pa.array(numeric)), pa.float64()).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = np.round(values * factor)
            good = np.isfinite(scaled) & (scaled >= TS_MIN_US) & (scaled < TS_MAX_US)
        idx = np.flatnonzero(numeric)
        us[idx[good]] = scaled[good].astype(np.int64)
        ok[idx[good]] = True
    for mask, target in ((zoned, pa.timestamp("us", "UTC")), (naive, pa.timestamp("us"))):
        if not mask.any():
            continue
        try:
            parsed = pc.cast(col.filter(pa.array(mask)), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # an impossible date somewhere: let parse_line sort them out
        values = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False)
        good = (values >= TS_MIN_US) & (values < TS_MAX_US)
        idx = np.flatnonzero(mask)
        us[idx[good]] = values[good]
        ok[idx[good]] = True
    return us, ok



class TimestampParser:
    """Parses a column of timestamps of any type into UTC microseconds, vectorized.

    * timestamp columns: naive ones are local time in ``timezone``;
    * date columns: midnight in ``timezone``;
    * numbers and numeric text: epoch ``unit`` (s, ms, us, ns);
    * other text: ISO 8601 through Arrow; anything else through pandas with
      ``fmt`` (a strptime format) or, without one, the format pandas guesses
      from the first value (kept for the following chunks, so a file is read
      one way). Text without an offset is local time in ``timezone``.

    A guessed layout with a numeric day and month (``03.01.2024``) is not
    trusted as guessed: the parser reads the values both ways until one value
    fits only one of them (a day above 12), and raises
    :class:`AmbiguousDayMonth` for a chunk whose values read differently
    both ways with nothing to settle it. :meth:`observe` lets a caller show
    the parser the rest of the column first (the evidence may come late in a
    file), then retry.

    Local times that do not exist or are ambiguous (daylight-saving changes)
    are rejected, as are times outside 1970-01-01 to 2200-01-01.
    """

    UNITS: dict[str, int] = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": -1_000}

    def __init__(self, *, timezone: str = "UTC", fmt: str | None = None, unit: str = "s", name: str = "ts"):
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {timezone!r} is not known; expected an IANA name such as UTC or Europe/Berlin"
            ) from None
        if unit not in self.UNITS:
            raise ValueError(f"timestamp unit {unit!r} is not supported; expected one of {', '.join(self.UNITS)}")
        self.timezone = timezone
        self.fmt = fmt
        self.unit = unit
        self.name = name
        self._guessed: str | None = fmt
        # While set, the day/month order of the guessed format is not settled; this is the other order.
        self._swapped: str | None = None

    @property
    def settled(self) -> bool:
        """False while a guessed day/month order waits for a value that settles it."""
        return self._swapped is None

    def observe(self, arr: pa.Array) -> None:
        """Look at more of the column for a value that settles the day/month order; never raises for it."""
        if self.settled and self._guessed is not None:
            return
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            try:
                arr = arr.cast(pa.large_string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return
        text = trimmed_text(arr)
        text = text.filter(pc.and_(pc.is_valid(text), pc.not_equal(text, "")))
        if len(text) == 0:
            return
        series = pd.Series(np.asarray(text.to_pandas(), dtype=object), copy=False)
        if self._guessed is None:
            self._guess(series.iloc[0])
        if not self.settled:
            self._settle(series, strict=False)

    def parse(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, str]]]:
        """Microseconds since the epoch, an ok mask, and the reason of each failed row."""
        n = len(arr)
        us = np.zeros(n, dtype=np.int64)
        ok = np.zeros(n, dtype=bool)
        rej = Rejections(n)
        t = arr.type
        missing = np_bool(pc.is_null(arr))
        if pa.types.is_timestamp(t):
            self._store(arr, np.ones(n, dtype=bool), us, ok, rej, aware=t.tz is not None)
        elif pa.types.is_date(t):
            self._store(arr.cast(pa.timestamp("us")), np.ones(n, dtype=bool), us, ok, rej, aware=False)
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            self._epoch(arr, np.ones(n, dtype=bool), us, ok, rej)
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                arr = arr.cast(pa.large_string())
            text = trimmed_text(arr)
            missing |= np_bool(pc.equal(text, ""))
            self._text(text, ~missing, us, ok, rej)
        else:
            raise ValueError(
                f"timestamp column {self.name!r} has type {t}; expected timestamps, dates, numbers or text"
            )
        rej.add(missing, "ts", lambda i: f"{self.name} is missing")
        bad_range = ok & ((us < TS_MIN_US) | (us >= TS_MAX_US))
        if bad_range.any():
            values = arr.to_pylist()

            def msg(i: int) -> str:
                hint = (
                    f" (read as epoch {UNIT_NAMES[self.unit]}; is the timestamp unit right?)"
                    if _looks_numeric(values[i])
                    else ""
                )
                return f"{self.name} {_show(values[i])} is outside {TS_RANGE}{hint}"

            rej.add(bad_range, "ts", msg)
            ok &= ~bad_range
        ok &= ~rej.bad
        return us, ok, rej.reasons

    # -- pieces ------------------------------------------------------------------
    def _store(self, arr: pa.Array, where: np.ndarray, us, ok, rej, *, aware: bool) -> None:
        """Timestamps (naive = local time in ``timezone``) into ``us`` at ``where``."""
        idx = np.flatnonzero(where)
        if aware:
            values = arr.cast(pa.timestamp("us", "UTC"), safe=False)
            v = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
            valid = ~np_bool(pc.is_null(values))
            us[idx[valid]] = v[valid]
            ok[idx[valid]] = True
            return
        values = arr.cast(pa.timestamp("us"), safe=False)
        if self.timezone == "UTC":
            v = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
            valid = ~np_bool(pc.is_null(values))
            us[idx[valid]] = v[valid]
            ok[idx[valid]] = True
            return
        naive = pd.Series(values.to_pandas(), copy=False)
        local = naive.dt.tz_localize(self.timezone, ambiguous="NaT", nonexistent="NaT")
        utc = pa.Array.from_pandas(local).cast(pa.timestamp("us", "UTC"))
        v = utc.cast(pa.int64()).to_numpy(zero_copy_only=False)
        valid = ~np_bool(pc.is_null(utc))
        us[idx[valid]] = v[valid]
        ok[idx[valid]] = True
        lost = np.zeros(len(us), dtype=bool)
        lost[idx] = ~valid & naive.notna().to_numpy()
        if lost.any():
            shown = values.to_pylist()
            rej.add(
                lost,
                "ts",
                lambda i: f"{self.name} {str(shown[np.searchsorted(idx, i)])!r} does not exist or is ambiguous "
                f"in {self.timezone} (a daylight-saving change); give the time with its UTC offset",
            )

    def _epoch(self, arr: pa.Array, where: np.ndarray, us, ok, rej) -> None:
        idx = np.flatnonzero(where)
        factor = self.UNITS[self.unit]
        if pa.types.is_integer(arr.type):
            v = arr.cast(pa.int64()).to_numpy(zero_copy_only=False) if arr.null_count == 0 else (
                pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            )
            valid = ~np_bool(pc.is_null(arr))
            if factor > 0:
                limit = np.iinfo(np.int64).max // factor
                fits = np.abs(v) <= limit
                conv = np.where(fits, v, 0) * factor
                # out-of-int64 values get a value the range check then rejects
                conv = np.where(fits, conv, np.iinfo(np.int64).max)
            else:
                conv = np.floor_divide(v, -factor)
        else:
            f = pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
            valid = np.isfinite(f)
            with np.errstate(invalid="ignore", over="ignore"):
                scaled = np.round(f * factor) if factor > 0 else np.round(f / -factor)
            inside = valid & (scaled >= np.iinfo(np.int64).min) & (scaled <= 2.0**62)
            conv = np.where(inside, scaled, 2.0**62).astype(np.int64)
            nonfinite = ~valid & ~np_bool(pc.is_null(arr))
            if nonfinite.any():
                shown = arr.to_pylist()
                full = np.zeros(len(us), dtype=bool)
                full[idx[nonfinite]] = True
                rej.add(full, "ts", lambda i: f"{self.name} {shown[np.searchsorted(idx, i)]!r} is not a finite number")
        us[idx[valid]] = conv[valid]
        ok[idx[valid]] = True

    def _text(self, text: pa.Array, where: np.ndarray, us, ok, rej) -> None:
        todo = where.copy()
        if self.fmt is None and where.all():
            # The common case, a clean ISO 8601 column, in one cast (zoned, else naive).
            for target, aware in ((pa.timestamp("us", "UTC"), True), (pa.timestamp("us"), False)):
                try:
                    parsed = pc.cast(text, target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue
                self._store(parsed, where, us, ok, rej, aware=aware)
                return
        if self.fmt is None:
            numeric = todo & np_bool(pc.match_substring_regex(text, f"^{NUMBER_PATTERN}$"))
            if numeric.any():
                sub = text.filter(pa.array(numeric))
                # up to 19 digits fits an int64 (nanoseconds since the epoch need 19)
                integer = np_bool(pc.match_substring_regex(sub, r"^[-+]?(?:[0-9]{1,18}|[1-8][0-9]{18})$"))
                arr = pc.if_else(pa.array(integer), sub, pa.scalar(None, sub.type)).cast(pa.int64())
                self._epoch(arr, numeric, us, ok, rej)
                if not integer.all():
                    floats = np.zeros(len(us), dtype=bool)
                    floats[np.flatnonzero(numeric)[~integer]] = True
                    self._epoch(text.filter(pa.array(floats)).cast(pa.float64()), floats, us, ok, rej)
                todo &= ~numeric
            for pattern, aware in ((f"^{ISO_ZONED}$", True), (f"^{ISO_NAIVE}$|^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$", False)):
                mask = todo & np_bool(pc.match_substring_regex(text, pattern))
                if not mask.any():
                    continue
                try:
                    parsed = pc.cast(text.filter(pa.array(mask)), pa.timestamp("us", "UTC") if aware else pa.timestamp("us"))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue  # an impossible date in there: pandas below names the rows
                self._store(parsed, mask, us, ok, rej, aware=aware)
                todo &= ~mask
        if todo.any():
            self._pandas(text, todo, us, ok, rej)

    def _pandas(self, text: pa.Array, where: np.ndarray, us, ok, rej) -> None:
        idx = np.flatnonzero(where)
        values = text.filter(pa.array(where)).to_pandas()
        series = pd.Series(np.asarray(values, dtype=object), copy=False)
        if self._guessed is None:
            self._guess(series.iloc[0])
        if not self.settled:
            self._settle(series, strict=True)
        fmt = self._guessed
        utc = fmt is not None and ("%z" in fmt or "%Z" in fmt)
        # MIXED_DAY_FIRST: no single layout, but day before month where a value could be either
        options = {"format": "mixed", "dayfirst": True} if fmt == MIXED_DAY_FIRST else {"format": fmt}
        try:
            parsed = pd.to_datetime(series, errors="coerce", utc=utc, **options)
        except (ValueError, TypeError):
            parsed = pd.to_datetime(series, errors="coerce", utc=True, **options)
        if parsed.dtype == object:  # pragma: no cover - pandas < 3 with mixed offsets
            parsed = pd.to_datetime(series, errors="coerce", utc=True, **options)
        parsed_ok = parsed.notna().to_numpy()
        if parsed_ok.any():
            arr = pa.Array.from_pandas(parsed)
            aware = arr.type.tz is not None
            sub = np.zeros(len(us), dtype=bool)
            sub[idx[parsed_ok]] = True
            self._store(arr.filter(pa.array(parsed_ok)), sub, us, ok, rej, aware=aware)
        if not parsed_ok.all():
            bad = np.zeros(len(us), dtype=bool)
            bad[idx[~parsed_ok]] = True
            raw = series.tolist()
            hint = f"the format {fmt!r}" if fmt and fmt not in ("mixed", MIXED_DAY_FIRST) else "a date/time pandas can read"
            rej.add(
                bad,
                "ts",
                lambda i: f"{self.name} {raw[np.searchsorted(idx, i)]!r} is not a timestamp; expected {hint}, "
                "ISO 8601, or epoch numbers (give --timestamp-format for other layouts)",
            )


    def _guess(self, first: str) -> None:
        from pandas.tseries.api import guess_datetime_format

        with warnings.catch_warnings():  # the dayfirst hint; the guessed format is what we use
            warnings.simplefilter("ignore", UserWarning)
            self._guessed = guess_datetime_format(first) or "mixed"
        # "mixed" (no one layout, e.g. two-digit years) reads 03.01.24 month first: as unsure as a guess
        self._swapped = MIXED_DAY_FIRST if self._guessed == "mixed" else swapped_day_month(self._guessed)

    def _settle(self, series: pd.Series, *, strict: bool) -> None:
        """Settle the day/month order from values that read only one way, or raise (``strict``)."""
        assert self._guessed is not None and self._swapped is not None
        a = _to_datetime(series, self._guessed)
        b = _to_datetime(series, self._swapped)
        if (a.notna() & b.isna()).any():  # e.g. 03.13.2024 in a month-first file
            self._swapped = None
        elif (b.notna() & a.isna()).any():
            self._guessed, self._swapped = self._swapped, None
        elif strict:
            differ = (a.notna() & b.notna() & (a != b)).to_numpy()
            if differ.any():
                k = int(np.argmax(differ))
                raise AmbiguousDayMonth(self.name, series.iloc[k], self._guessed, self._swapped)


MIXED_DAY_FIRST = "mixed, day first"  # pandas' per-value parsing, reading an ambiguous date day first


class AmbiguousDayMonth(ValueError):
    """Timestamps whose layout may be day first or month first, with no value to settle it."""

    def __init__(self, column: str, value: str, fmt: str, other: str):
        if "mixed" in (fmt, other) or MIXED_DAY_FIRST in (fmt, other):
            m, d = _to_datetime(pd.Series([value]), "mixed")[0], _to_datetime(pd.Series([value]), MIXED_DAY_FIRST)[0]
            super().__init__(
                f"the timestamps in column {column!r} could be day first or month first ({value!r} is "
                f"{d.day} {d:%B} or {m.day} {m:%B} {m.year}) and no value in the file settles it; "
                "pass --timestamp-format with its layout, e.g. '%d.%m.%y %H:%M' to read 03.01.24 10:00 as 3 January"
            )
            self.formats = (MIXED_DAY_FIRST, "mixed")
            return
        day_first, month_first = (fmt, other) if fmt.index("%d") < fmt.index("%m") else (other, fmt)
        try:
            d = dt.datetime.strptime(value, day_first)
            m = dt.datetime.strptime(value, month_first)
            readings = f" is {d.day} {d:%B} or {m.day} {m:%B} {m.year}"
        except ValueError:  # a layout strptime reads differently from pandas; the value alone says enough
            readings = ""
        super().__init__(
            f"the timestamps in column {column!r} could be day first or month first ({value!r}{readings}) "
            f"and no value in the file settles it; "
            f"pass --timestamp-format '{day_first}' or --timestamp-format '{month_first}'"
        )
        self.formats = (day_first, month_first)


def swapped_day_month(fmt: str) -> str | None:
    """``fmt`` with ``%d`` and ``%m`` swapped when its day/month order is a guess, else ``None``.

    Year-first layouts (``%Y/%m/%d``) are read as the ISO order, the only one in use.
    """
    if "%d" not in fmt or "%m" not in fmt:
        return None
    year = min((fmt.index(y) for y in ("%Y", "%y") if y in fmt), default=len(fmt))
    if year < min(fmt.index("%d"), fmt.index("%m")):
        return None
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _to_datetime(series: pd.Series, fmt: str) -> pd.Series:
    options = {"format": "mixed", "dayfirst": True} if fmt == MIXED_DAY_FIRST else {"format": fmt}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(series, errors="coerce", utc=True, **options)


def _show(value: object) -> str:
    if isinstance(value, dt.datetime):
        return repr(value.isoformat())
    return repr(value)


def _looks_numeric(value: object) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, str) and bool(NUMBER_RE.fullmatch(value.strip())))
