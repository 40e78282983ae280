"""Labelled series the fleet simulator does not make: slow rates, other units, a pump, seasonal series.

A small deterministic generator for ``bench_detection_realistic.py``. Every
case is a function of a seed returning :class:`Case`: readings (schemas.READINGS,
the values mapped into the platform's metric columns as an import would), the
labelled anomalies, the registry entries a user would write (or none: data-
driven), and how many days to score after the history days. Nothing here is
used by the platform itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.registry import MetricSpec, SensorSpec
from iot_platform.core.schemas import READINGS, TS_TYPE, conform
from iot_platform.core.simulator import day_start_us

US = 1_000_000
DAY_S = 86_400
START = dt.date(2024, 3, 1)


@dataclasses.dataclass
class Label:
    sensor_id: str
    kind: str
    start_s: int  # seconds after START 00:00
    end_s: int


@dataclasses.dataclass
class Case:
    name: str
    readings: pa.Table
    labels: list[Label]
    entries: tuple[SensorSpec, ...] = ()
    history_days: int = 2
    days: int = 3


def _table(sensor: str, interval_s: float, columns: dict[str, np.ndarray]) -> pa.Table:
    n = len(next(iter(columns.values())))
    ts = day_start_us(START) + np.round(np.arange(n) * interval_s * US).astype(np.int64)
    return conform(pa.table({"sensor_id": [sensor] * n, "ts": pa.array(ts).cast(TS_TYPE), **columns}), READINGS)


def _daily(t_s: np.ndarray, peak_hour: float = 15.0) -> np.ndarray:
    return np.cos(2 * np.pi * (t_s / DAY_S - peak_hour / 24))


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float = 0.6) -> np.ndarray:
    e = rng.normal(0, sd * np.sqrt(1 - phi**2), n)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):  # a generator, not the platform: a loop over a few thousand samples is fine here
        acc = phi * acc + e[i]
        out[i] = acc
    return out


def _span(t: np.ndarray, a: float, b: float) -> np.ndarray:
    return (t >= a) & (t < b)


def cpu_5min(seed: int, days: int = 5) -> Case:
    """CPU load in % (mapped to ``temperature``) every 5 min: daily cycle, autocorrelated noise; spikes and a
    level shift (a runaway process)."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for s in range(3):
        sid = f"cpu-5min-{s}"
        t = np.arange(days * 288) * 300.0
        x = 25 + 12 * _daily(t, 14) + _ar1(rng, len(t), 2.0)
        for k in range(2):  # spikes of one or two readings
            i = int(rng.integers(3 * 288, len(t) - 10))
            w = int(rng.integers(1, 3))
            x[i : i + w] += rng.uniform(30, 50)
            labels.append(Label(sid, "spike", int(t[i]), int(t[i + w - 1]) + 300))
        a = int(rng.integers(3 * 288, len(t) - 100))
        x[a : a + 72] += 25  # six hours
        labels.append(Label(sid, "level_shift", int(t[a]), int(t[a + 71]) + 300))
        parts.append(_table(sid, 300, {"temperature": np.clip(x, 0, 100)}))
    return Case("CPU % every 5 min (spikes, a level shift)", pa.concat_tables(parts), labels, history_days=2,
                days=days - 2)  # fmt: skip


def flow_30min(seed: int, days: int = 6) -> Case:
    """A flow in m3/h (mapped to ``humidity``) every 30 min with a daily demand profile; spikes (a burst) and a
    level shift (a leak)."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for s in range(3):
        sid = f"flow-30min-{s}"
        t = np.arange(days * 48) * 1800.0
        x = 120 + 60 * _daily(t, 19) + rng.normal(0, 4, len(t))
        i = int(rng.integers(3 * 48, len(t) - 5))
        x[i] += rng.uniform(80, 150)
        labels.append(Label(sid, "spike", int(t[i]), int(t[i]) + 1800))
        a = int(rng.integers(3 * 48, len(t) - 30))
        x[a:] += 45  # a leak: flow stays higher
        labels.append(Label(sid, "level_shift", int(t[a]), int(t[a]) + 6 * 1800))
        parts.append(_table(sid, 1800, {"humidity": x}))
    return Case("flow m3/h every 30 min (a burst, a leak)", pa.concat_tables(parts), labels, history_days=3,
                days=days - 3)  # fmt: skip


def pressure_bar_1h(seed: int, days: int = 6) -> Case:
    """A line pressure in bar (``pressure``: 1.2 bar, far below the simulator's 300 hPa) hourly with a daily
    cycle; a spike and a level shift. Registry entry: unit bar, valid range [-1, 16]."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for s in range(3):
        sid = f"line-bar-1h-{s}"
        t = np.arange(days * 24) * 3600.0
        x = 1.2 + 0.05 * _daily(t, 6) + rng.normal(0, 0.004, len(t))
        i = int(rng.integers(3 * 24, len(t) - 4))
        x[i] += rng.choice([-1, 1]) * rng.uniform(0.15, 0.3)
        labels.append(Label(sid, "spike", int(t[i]), int(t[i]) + 3600))
        a = int(rng.integers(3 * 24, len(t) - 12))
        if abs(a - i) < 3:
            a = min(i + 6, len(t) - 6)
        x[a:] -= 0.12  # a regulator drops its set point
        labels.append(Label(sid, "level_shift", int(t[a]), int(t[a]) + 4 * 3600))
        parts.append(_table(sid, 3600, {"pressure": x}))
    entries = (SensorSpec("line-bar-*", (("pressure", MetricSpec("bar", (-1.0, 16.0))),), interval_s=3600.0),)
    return Case("pressure in bar every hour (a spike, a set-point drop)", pa.concat_tables(parts), labels, entries,
                history_days=3, days=days - 3)  # fmt: skip


def seasonal_hourly(seed: int, days: int = 6) -> Case:
    """Outdoor temperature hourly: a 5 C daily cycle with weather noise; spikes and a variance change (a loose
    probe) of a day."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for s in range(3):
        sid = f"outdoor-1h-{s}"
        t = np.arange(days * 24) * 3600.0
        x = 12 + 5 * _daily(t, 15) + _ar1(rng, len(t), 0.4, 0.8)
        for _ in range(2):
            i = int(rng.integers(3 * 24, len(t) - 2))
            x[i] += rng.choice([-1, 1]) * rng.uniform(6, 10)
            labels.append(Label(sid, "spike", int(t[i]), int(t[i]) + 3600))
        parts.append(_table(sid, 3600, {"temperature": x}))
    return Case("seasonal temperature every hour (spikes)", pa.concat_tables(parts), labels, history_days=3,
                days=days - 3)  # fmt: skip


def noisy_1hz(seed: int, days: int = 3) -> Case:
    """A 1 Hz vibration RMS in mm/s (``vibration``, no g-based alarm: data-driven): a level shift and a variance
    change (a loose mount: noise x4 for 20 min)."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for s in range(2):
        sid = f"vib-mms-1hz-{s}"
        t = np.arange(days * DAY_S, dtype=float)
        x = 2.5 + 0.2 * _daily(t) + rng.normal(0, 0.05, len(t))
        a = int(rng.integers(DAY_S + 3600, 2 * DAY_S - 7200))
        x[a : a + 1200] += rng.normal(0, 0.2, 1200)
        labels.append(Label(sid, "variance_change", a, a + 1200))
        b = int(rng.integers(2 * DAY_S + 3600, 3 * DAY_S - 7200))
        x[b:] += 0.6
        labels.append(Label(sid, "level_shift", b, b + 600))
        parts.append(_table(sid, 1.0, {"vibration": x}))
    return Case("vibration mm/s at 1 Hz (a loose mount, a step)", pa.concat_tables(parts), labels, history_days=1,
                days=days - 1)  # fmt: skip


def pump_1hz(seed: int, days: int = 2) -> Case:
    """A centrifugal pump at 1 Hz: flow m3/h (``humidity``), discharge pressure bar (``pressure``), vibration g
    (``vibration``) and bearing temperature C (``temperature``), all driven by its load. Faults on day 2:
    bearing wear (vibration and its noise creep up over 90 min), cavitation (pressure drops 0.15 bar and
    vibration gets noisy, flow unchanged, 10 min), a closing valve (over 5 min pressure +0.4 bar and flow
    -30 %, staying for an hour)."""
    rng = np.random.default_rng(seed)
    sid = "pump-a"
    t = np.arange(days * DAY_S, dtype=float)
    # duty: load changes every 2-4 h between 40 % and 90 %, ramping over 2 minutes, plus slow wander
    load = np.empty(len(t))
    pos, level = 0, 0.6
    while pos < len(t):
        nxt = level if pos == 0 else rng.uniform(0.4, 0.9)
        dur = int(rng.integers(7200, 14400))
        ramp = np.linspace(level, nxt, 120)
        seg = np.r_[ramp, np.full(max(dur - 120, 0), nxt)][: len(t) - pos]
        load[pos : pos + len(seg)] = seg
        pos += len(seg)
        level = nxt
    load += _ar1(rng, len(t), 0.01, 0.99)
    flow = 100 * load + rng.normal(0, 0.8, len(t))
    press = 4.0 - 1.8 * load**2 + rng.normal(0, 0.01, len(t))
    vib = 0.05 + 0.15 * load + rng.normal(0, 0.006, len(t))
    temp = 40 + 15 * load + _ar1(rng, len(t), 0.05, 0.95)
    labels = []
    d1 = DAY_S
    a = d1 + int(rng.integers(3600, 5 * 3600))  # bearing wear
    ramp = np.clip((t - a) / 5400, 0, 1) * _span(t, a, a + 5400)
    vib += 0.08 * ramp + rng.normal(0, 0.02, len(t)) * ramp
    labels.append(Label(sid, "bearing_wear", a, a + 5400))
    c = d1 + int(rng.integers(8 * 3600, 12 * 3600))  # cavitation
    cav = _span(t, c, c + 600)
    press[cav] -= 0.15
    vib[cav] += rng.normal(0, 0.03, int(cav.sum()))
    labels.append(Label(sid, "cavitation", c, c + 600))
    v = d1 + int(rng.integers(15 * 3600, 20 * 3600))  # closing valve
    close = np.clip((t - v) / 300, 0, 1) * _span(t, v, v + 3600)
    press += 0.4 * close
    flow *= 1 - 0.3 * close
    labels.append(Label(sid, "closing_valve", v, v + 3600))
    entries = (SensorSpec("pump-*", (("humidity", MetricSpec("m3/h")), ("pressure", MetricSpec("bar", (-1.0, 16.0))),
                                     ("vibration", MetricSpec("g", (0.0, 50.0))),
                                     ("temperature", MetricSpec("C", (-40.0, 150.0)))),
                          interval_s=1.0, group="plant", multivariate=True),)  # fmt: skip
    return Case("pump at 1 Hz, four correlated metrics (bearing wear, cavitation, closing valve)",
                _table(sid, 1.0, {"humidity": flow, "pressure": press, "vibration": vib, "temperature": temp}),
                labels, entries, history_days=1, days=days - 1)  # fmt: skip


def quiet(seed: int, days: int = 8) -> Case:
    """Long complete series with no anomaly at all (5 min CPU, 30 min flow, hourly bar, 1 Hz vibration):
    zero alerts is the right answer."""
    rng = np.random.default_rng(seed)
    t5 = np.arange(days * 288) * 300.0
    t30 = np.arange(days * 48) * 1800.0
    t60 = np.arange(days * 24) * 3600.0
    t1 = np.arange(days * DAY_S, dtype=float)
    parts = [
        _table("quiet-cpu-5min", 300, {"temperature": np.clip(25 + 12 * _daily(t5, 14) + _ar1(rng, len(t5), 2.0), 0, 100)}),
        _table("quiet-flow-30min", 1800, {"humidity": 120 + 60 * _daily(t30, 19) + rng.normal(0, 4, len(t30))}),
        _table("quiet-bar-1h", 3600, {"pressure": 1.2 + 0.05 * _daily(t60, 6) + rng.normal(0, 0.004, len(t60))}),
        _table("quiet-vib-1hz", 1.0, {"vibration": 2.5 + 0.2 * _daily(t1) + rng.normal(0, 0.05, len(t1))}),
        _table("quiet-count-5min", 300, {"humidity": rng.poisson(30 + 20 * (1 + _daily(t5, 12))).astype(float)}),
    ]
    entries = (SensorSpec("quiet-bar-*", (("pressure", MetricSpec("bar", (-1.0, 16.0))),)),)
    return Case("long complete series, no anomaly", pa.concat_tables(parts), [], entries, history_days=2,
                days=days - 2)  # fmt: skip


def stuck(seed: int, days: int = 5) -> Case:
    """Stuck sensors on metrics that legitimately repeat: an integer CPU % every 5 min, a flow to 0.1 m3/h
    every 30 min, a Poisson count (mean 0.5, mostly 0 and 1) at 1 Hz, a pressure in bar to 0.01 hourly; each
    freezes on one value for a while (4 h, 12 h, 20 min, 10 h)."""
    rng = np.random.default_rng(seed)
    labels = []

    def freeze(sid: str, x: np.ndarray, interval_s: float, n: int) -> np.ndarray:
        a = int(rng.integers(int(2 * DAY_S / interval_s), len(x) - n - 10))
        x[a : a + n] = x[a - 1]
        labels.append(Label(sid, "flatline", int(a * interval_s), int((a + n) * interval_s)))
        return x

    t5, t30 = np.arange(days * 288) * 300.0, np.arange(days * 48) * 1800.0
    t1, t60 = np.arange(days * DAY_S, dtype=float), np.arange(days * 24) * 3600.0
    cpu = np.round(np.clip(25 + 12 * _daily(t5, 14) + _ar1(rng, len(t5), 2.0), 0, 100))
    flow = np.round(120 + 60 * _daily(t30, 19) + rng.normal(0, 4, len(t30)), 1)
    count = rng.poisson(0.5, len(t1)).astype(float)
    bar = np.round(1.2 + 0.05 * _daily(t60, 6) + rng.normal(0, 0.01, len(t60)), 2)
    parts = [
        _table("stuck-cpu-5min", 300, {"temperature": freeze("stuck-cpu-5min", cpu, 300, 48)}),
        _table("stuck-flow-30min", 1800, {"humidity": freeze("stuck-flow-30min", flow, 1800, 24)}),
        _table("stuck-count-1hz", 1.0, {"vibration": freeze("stuck-count-1hz", count, 1.0, 1200)}),
        _table("stuck-bar-1h", 3600, {"pressure": freeze("stuck-bar-1h", bar, 3600, 10)}),
    ]
    entries = (SensorSpec("stuck-bar-*", (("pressure", MetricSpec("bar", (-1.0, 16.0))),)),)
    return Case("stuck sensors on quantized metrics (integer %, 0.1 m3/h, a count at 1 Hz, 0.01 bar)",
                pa.concat_tables(parts), labels, entries, history_days=2, days=days - 2)  # fmt: skip


def drifting(seed: int, days: int = 6) -> Case:
    """Slow sensor drift on metrics other than temperature: a hygrometer every minute drifting +6 %RH over 12 h,
    a pressure transmitter in bar every 10 s drifting -0.08 bar over a day, a flow every 5 min drifting +25 %
    over 18 h (each then stays off); daily cycles and noise as usual."""
    rng = np.random.default_rng(seed)
    labels = []

    def ramp(sid: str, t: np.ndarray, size: float, hours: float) -> np.ndarray:
        a = float(rng.uniform(3.2, 4.2)) * DAY_S
        labels.append(Label(sid, "drift", int(a), int(t[-1])))
        return size * np.clip((t - a) / (hours * 3600), 0, 1)

    t60, t10, t5 = np.arange(days * 1440) * 60.0, np.arange(days * 8640) * 10.0, np.arange(days * 288) * 300.0
    hum = 55 + 6 * _daily(t60, 4) + _ar1(rng, len(t60), 0.8) + ramp("drift-hum-1min", t60, 6.0, 12)
    bar = 2.5 + 0.03 * _daily(t10, 9) + rng.normal(0, 0.01, len(t10)) + ramp("drift-bar-10s", t10, -0.08, 24)
    flow = (80 + 30 * _daily(t5, 18) + rng.normal(0, 3, len(t5))) * (1 + ramp("drift-flow-5min", t5, 0.25, 18))
    parts = [
        _table("drift-hum-1min", 60, {"humidity": hum}),
        _table("drift-bar-10s", 10, {"pressure": bar}),
        _table("drift-flow-5min", 300, {"humidity": flow}),
    ]
    entries = (SensorSpec("drift-bar-*", (("pressure", MetricSpec("bar", (-1.0, 16.0))),)),)
    return Case("slow drift of other metrics (%RH every minute, bar every 10 s, a flow every 5 min)",
                pa.concat_tables(parts), labels, entries, history_days=3, days=days - 3)  # fmt: skip


CASES = (cpu_5min, flow_30min, pressure_bar_1h, seasonal_hourly, noisy_1hz, pump_1hz, quiet, stuck, drifting)
