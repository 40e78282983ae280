"""The detectors' inputs as numpy frames: window statistics and the drift baseline.

Readings frames live in :mod:`iot_platform.core.windows`. Every frame of one
detection call shares the same sorted ``names`` (sensor ids), so a code means
the same sensor in all of them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.windows import DAY_US, US, EncodedSensors, WindowParams, _float, _key_order, _ts_us

BASELINE = pa.schema(
    [
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("slot_s", pa.int32(), nullable=False),  # window_end's seconds after midnight UTC
        pa.field("median", pa.float64()),  # median window mean of the metric in the slot over the previous days
        pa.field("n_days", pa.int32(), nullable=False),  # previous days with a usable window in the slot
        pa.field("scale", pa.float64()),  # per sensor and metric: robust sd of the window means around the medians
        pa.field("spread", pa.float64()),  # per sensor (temperature): median temp_std of its windows
    ]
)

# the window mean of each metric the drift detector follows
MEAN_COLUMNS = {"temperature": "temp_mean", "humidity": "humidity_mean", "pressure": "pressure_mean",
                "vibration": "vibration_mean"}  # fmt: skip

_WINDOW_COLUMNS = ("window_start", "window_end", "n_readings", "temp_mean", "temp_std", "vibration_max",
                   "battery_level", "missing_rate", "humidity_mean", "pressure_mean", "vibration_mean")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class WindowFrame:
    """Window statistics of a set of sensors, sorted by (code, window_end) and unique on it.

    ``hop_us`` is per row: the hop of the sensor's window grid.
    """

    names: np.ndarray
    code: np.ndarray
    start: np.ndarray
    end: np.ndarray
    n: np.ndarray
    temp_mean: np.ndarray
    temp_std: np.ndarray
    vib_max: np.ndarray
    battery: np.ndarray
    missing: np.ndarray
    hop_us: np.ndarray
    hum_mean: np.ndarray
    press_mean: np.ndarray
    vib_mean: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.code)

    def mean(self, metric: str) -> np.ndarray:
        """The window mean of ``metric`` (NaN where the window had no valid value)."""
        return {"temperature": self.temp_mean, "humidity": self.hum_mean, "pressure": self.press_mean,
                "vibration": self.vib_mean}[metric]  # fmt: skip

    def select(self, mask: np.ndarray) -> WindowFrame:
        return WindowFrame(self.names, *(getattr(self, f.name)[mask] for f in dataclasses.fields(self)[1:]))

    @classmethod
    def from_table(
        cls,
        table: pa.Table | None,
        names: np.ndarray | None,
        windows: WindowParams,
        hop_us: np.ndarray | None = None,
    ) -> WindowFrame:
        """Rows of ``table`` (WINDOW_STATS columns, at least sensor_id and window_end) for sensors in ``names``
        (default: every sensor of the table).

        ``hop_us`` (per code) gives each sensor's hop; where it is not given
        (or for sensors it marks 0), the smallest step between the sensor's
        window ends in ``table`` is used, else ``windows.hop_s``.
        """
        if table is None or table.num_rows == 0:
            z = np.zeros(0, np.int64)
            names = np.zeros(0, dtype=object) if names is None else names
            return cls(names, z, z, z, z, *(np.zeros(0) for _ in range(5)), z, *(np.zeros(0) for _ in range(3)))
        enc = EncodedSensors(table.column("sensor_id"))
        if names is None:
            names = np.array(sorted(enc.used()), dtype=object)
        code = enc.codes(names)
        keep = code >= 0
        n = table.num_rows
        cols = {}
        for c in _WINDOW_COLUMNS:
            if c in ("window_start", "window_end"):
                cols[c] = _ts_us(table.column(c)) if c in table.column_names else None
            elif c == "n_readings":
                cols[c] = (
                    np.asarray(pc.fill_null(table.column(c), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
                    if c in table.column_names
                    else np.zeros(n, np.int64)
                )
            else:
                cols[c] = _float(table.column(c) if c in table.column_names else None, n)
        end = cols["window_end"]
        start = cols["window_start"] if cols["window_start"] is not None else end
        if _sorted_unique(code, end):  # rows of known sensors in (code, window_end) order: taken as they are
            return cls(names, code, start, end, cols["n_readings"], cols["temp_mean"], cols["temp_std"],
                       cols["vibration_max"], cols["battery_level"], cols["missing_rate"],
                       _hops(code, end, len(names), windows, hop_us)[code], cols["humidity_mean"],
                       cols["pressure_mean"], cols["vibration_mean"])  # fmt: skip
        code, end = code[keep], end[keep]
        order = _key_order(code, end) if len(code) else np.zeros(0, np.int64)
        code, end = code[order], end[order]
        first = np.ones(len(code), dtype=bool)
        first[1:] = (code[1:] != code[:-1]) | (end[1:] != end[:-1])
        sel = np.flatnonzero(keep)[order][first]
        code, end = code[first], end[first]
        hop = _hops(code, end, len(names), windows, hop_us)
        return cls(
            names,
            code,
            start[sel],
            end,
            cols["n_readings"][sel],
            cols["temp_mean"][sel],
            cols["temp_std"][sel],
            cols["vibration_max"][sel],
            cols["battery_level"][sel],
            cols["missing_rate"][sel],
            hop[code] if len(code) else np.zeros(0, np.int64),
            cols["humidity_mean"][sel],
            cols["pressure_mean"][sel],
            cols["vibration_mean"][sel],
        )

    @classmethod
    def from_arrays(cls, names: np.ndarray, arrays: dict[str, np.ndarray], hop_us: np.ndarray) -> WindowFrame:
        """From :func:`iot_platform.core.windows.window_arrays` output (already sorted and unique)."""
        c = arrays["code"]
        return cls(
            names,
            c,
            arrays["window_start"],
            arrays["window_end"],
            arrays["n_readings"],
            arrays["temp_mean"],
            arrays["temp_std"],
            arrays["vibration_max"],
            arrays["battery_level"],
            arrays["missing_rate"],
            hop_us[c] if len(c) else np.zeros(0, np.int64),
            arrays["humidity_mean"],
            arrays["pressure_mean"],
            arrays["vibration_mean"],
        )

    def for_names(self, names: np.ndarray, hop_us: np.ndarray | None = None) -> WindowFrame:
        """The rows of sensors in ``names`` (sorted), recoded to positions in it; ``hop_us`` (per new code,
        0 = keep) overrides the rows' hops."""
        lut = _lut(self.names, names)
        code = lut[self.code] if len(self.code) else self.code
        keep = code >= 0
        out = WindowFrame(names, code[keep], *(getattr(self, f.name)[keep] for f in dataclasses.fields(self)[2:]))
        if hop_us is not None and out.n_rows:
            given = hop_us[out.code]
            out = dataclasses.replace(out, hop_us=np.where(given > 0, given, out.hop_us))
        return out

    @classmethod
    def concat(cls, frames: list[WindowFrame]) -> WindowFrame:
        """Frames of the same names; rows of a later frame replace equal keys of an earlier one."""
        fields = [f.name for f in dataclasses.fields(cls)][1:]
        merged = {f: np.concatenate([getattr(fr, f) for fr in frames]) for f in fields}
        rank = np.concatenate([np.full(fr.n_rows, -i) for i, fr in enumerate(frames)])
        order = np.lexsort((rank, merged["end"], merged["code"]))
        code, end = merged["code"][order], merged["end"][order]
        first = np.ones(len(code), dtype=bool)
        first[1:] = (code[1:] != code[:-1]) | (end[1:] != end[:-1])
        sel = order[first]
        return cls(frames[0].names, *(merged[f][sel] for f in fields))


def detect_on_windows(detect_frame, window_stats: pa.Table, params, windows: WindowParams,
                      emit_start, emit_end) -> pa.Table:  # fmt: skip
    """Run a window-level ``detect_frame`` on a WINDOW_STATS table, windows ending in ``(emit_start, emit_end]``.

    The table-level ``detect`` of the detectors that only read window statistics.
    """
    from iot_platform.core.windows import sensor_names, to_us

    wf = WindowFrame.from_table(window_stats, sensor_names(window_stats), windows)
    a, b = to_us(emit_start, "emit_start"), to_us(emit_end, "emit_end")
    return detect_frame(wf, params, windows, -(2**62) if a is None else a, 2**62 if b is None else b)


def _sorted_unique(code: np.ndarray, end: np.ndarray) -> bool:
    """Whether every row is a known sensor's (code >= 0) and rows are in (code, end) order, unique on it."""
    if len(code) == 0 or code[0] < 0:
        return False
    up = code[1:] >= code[:-1]
    if not up.all():
        return False
    flat = np.flatnonzero(end[1:] <= end[:-1])  # few: where one sensor's rows end and the next one's begin
    return bool((code[flat + 1] > code[flat]).all())


def _lut(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """For each of the sorted ``old`` names, its position in the sorted ``new`` names, or -1."""
    if len(old) == 0 or len(new) == 0:
        return np.full(len(old), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(new, old), len(new) - 1)
    return np.where(new[pos] == old, pos, -1).astype(np.int64)


def _hops(code: np.ndarray, end: np.ndarray, n_names: int, windows: WindowParams, hop_us: np.ndarray | None) -> np.ndarray:
    out = np.full(n_names, windows.hop_us, dtype=np.int64)
    if len(code) > 1:
        same = code[1:] == code[:-1]
        step = np.where(same, end[1:] - end[:-1], np.iinfo(np.int64).max)
        smallest = np.full(n_names, np.iinfo(np.int64).max, dtype=np.int64)
        # rows are sorted by code: the smallest step of each code by one reduceat over its segment
        c = code[1:]
        first = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1]
        smallest[c[first]] = np.minimum.reduceat(step, first)
        seen = smallest < np.iinfo(np.int64).max
        out[seen] = smallest[seen]
    if hop_us is not None:
        given = hop_us > 0
        out[given] = hop_us[given]
    return out


@dataclasses.dataclass(frozen=True)
class MetricBaseline:
    """One metric's slot medians (sorted by key = code * 86400 + slot) and per-code scale and spread."""

    key: np.ndarray
    median: np.ndarray
    n_days: np.ndarray
    scale: np.ndarray  # per code (NaN when unknown)
    spread: np.ndarray  # per code (NaN when unknown)

    @classmethod
    def empty(cls, n_names: int) -> MetricBaseline:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.full(n_names, np.nan),
                   np.full(n_names, np.nan))  # fmt: skip

    def lookup(self, code: np.ndarray, window_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(median, n_days) of the slot of each window; (NaN, 0) where the slot has no baseline."""
        slot = (window_end % DAY_US) // US
        key = code * 86_400 + slot
        if len(self.key) == 0:
            return np.full(len(key), np.nan), np.zeros(len(key), np.int64)
        pos = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        hit = self.key[pos] == key
        return np.where(hit, self.median[pos], np.nan), np.where(hit, self.n_days[pos], 0)


@dataclasses.dataclass(frozen=True)
class BaselineFrame:
    """The drift baseline of a set of sensors: per metric, slot medians and per-sensor scales; and who is known."""

    known: np.ndarray  # per code: seen on a previous day
    metrics: dict  # metric -> MetricBaseline

    def metric(self, m: str) -> MetricBaseline:
        return self.metrics.get(m) or MetricBaseline.empty(len(self.known))

    @classmethod
    def from_table(cls, table: pa.Table | None, names: np.ndarray) -> BaselineFrame:
        n_names = len(names)
        if table is None or table.num_rows == 0:
            return cls(np.zeros(n_names, bool), {})
        code = EncodedSensors(table.column("sensor_id")).codes(names)
        keep = code >= 0
        n = table.num_rows
        known = np.zeros(n_names, bool)
        known[code[keep]] = True
        # metric names as codes: a fleet's baseline has millions of rows, comparing strings was most of a batch
        enc = pc.dictionary_encode(table.column("metric").combine_chunks())
        metric_code = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), np.int64)
        metric_names = enc.dictionary.to_pylist()
        slot = np.asarray(table.column("slot_s").to_numpy(zero_copy_only=False), dtype=np.int64)
        median = _float(table.column("median"), n)
        n_days = np.asarray(pc.fill_null(table.column("n_days"), 0).to_numpy(zero_copy_only=False), np.int64)
        scale_rows = _float(table.column("scale"), n)
        spread_rows = _float(table.column("spread"), n)
        out = {}
        present = np.unique(metric_code[keep])
        for m, i in sorted((metric_names[i], i) for i in present[present >= 0].tolist()):
            sel = keep & (metric_code == i)
            c = code[sel]
            key = c * 86_400 + slot[sel]
            order = np.argsort(key, kind="stable")
            scale = np.full(n_names, np.nan)
            scale[c[order][::-1]] = scale_rows[sel][order][::-1]  # first row of each sensor wins
            spread = np.full(n_names, np.nan)
            spread[c[order][::-1]] = spread_rows[sel][order][::-1]
            out[m] = MetricBaseline(key[order], median[sel][order], n_days[sel][order], scale, spread)
        return cls(known, out)

    def for_names(self, names: np.ndarray, old_names: np.ndarray) -> BaselineFrame:
        """This baseline (coded by ``old_names``) recoded to positions in ``names`` (sorted)."""
        lut = _lut(old_names, names)
        new_of_old = np.flatnonzero(lut >= 0)
        known = np.zeros(len(names), bool)
        known[lut[new_of_old]] = self.known[new_of_old]
        out = {}
        for m, mb in self.metrics.items():
            scale = np.full(len(names), np.nan)
            spread = np.full(len(names), np.nan)
            scale[lut[new_of_old]] = mb.scale[new_of_old]
            spread[lut[new_of_old]] = mb.spread[new_of_old]
            old_code = mb.key // 86_400
            new_code = lut[old_code] if len(old_code) else old_code
            keep = new_code >= 0
            key = new_code[keep] * 86_400 + (mb.key[keep] - old_code[keep] * 86_400)
            out[m] = MetricBaseline(key, mb.median[keep], mb.n_days[keep], scale, spread)
        return BaselineFrame(known, out)
