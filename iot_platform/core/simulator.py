"""A deterministic, vectorized simulator of a sensor fleet, with labelled faults.

Every value is a pure function of ``(seed, sensor, UTC day, sample index)``:
per-reading noise comes from a counter-based hash (splitmix64) of those
coordinates, and the fault episodes of a sensor-day come from a small
``numpy`` generator seeded with them. So any time slice of any day can be
generated on its own, a 30-second micro-batch costs 30 seconds of work, and a
day built batch by batch equals the day generated at once.

Physics (per sensor, parameters drawn once from the seed):

* temperature: base 18..26 C, a diurnal cycle peaking mid-afternoon
  (amplitude 1.5..4 C), a smooth day-to-day weather offset (sd 0.4 C),
  white noise (sd 0.15 C);
* humidity: anti-correlated with temperature (-1.5 %RH per C), noise 0.8 %RH;
* pressure: slow synoptic (3.7 days) and semi-diurnal variations, noise 0.1 hPa;
* vibration: a steady level 0.1..0.5 g with noise, plus equipment episodes;
* battery: drains linearly over a 20..90 day life, then is replaced;
* about 2 % of readings are dropped at random.

Faults are episodes with labels (the ground truth in ``fault_labels``):
spikes, sensor faults (impossible values), drift, flatline, high vibration,
low battery, outages; and delivery faults for ingestion to absorb:
duplicates, out-of-order arrival, clock skew.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from iot_platform.core.schemas import FAULT_LABELS, READINGS

DAY_US = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
SOURCE = "simulator"

# Streams of per-reading randomness; each gets its own hash key.
_S_TEMP, _S_TEMP2, _S_HUM, _S_HUM2, _S_PRES, _S_PRES2, _S_VIB, _S_VIB2, _S_DROP, _S_DUP, _S_SWAP = range(11)


@dataclasses.dataclass(frozen=True)
class FaultRates:
    """Expected episodes per sensor-day (Poisson means) and per-reading rates."""

    spike: float = 3.0
    sensor_fault: float = 0.4
    drift: float = 0.04  # episode starts per sensor-day; episodes last 6..48 h
    flatline: float = 0.3
    high_vibration: float = 0.4
    outage: float = 0.3
    clock_skew: float = 0.1
    drop_rate: float = 0.02
    duplicate_rate: float = 0.002
    out_of_order_rate: float = 0.002

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"fault rate {f.name}={v!r} is invalid; expected a number >= 0")
        for name in ("drop_rate", "duplicate_rate", "out_of_order_rate"):
            if getattr(self, name) >= 0.5:
                raise ValueError(f"{name}={getattr(self, name)} is invalid; expected a fraction below 0.5")


NO_FAULTS = FaultRates(**{f.name: 0.0 for f in dataclasses.fields(FaultRates)})


@dataclasses.dataclass(frozen=True)
class FleetParams:
    """What the simulated fleet is: size, sample interval, seed and fault rates."""

    seed: int = 42
    n_sensors: int = 10
    sample_interval_s: float = 1.0
    faults: FaultRates = FaultRates()

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} is invalid; expected an integer >= 0")
        if not isinstance(self.n_sensors, int) or not 1 <= self.n_sensors <= 100_000:
            raise ValueError(f"n_sensors={self.n_sensors!r} is invalid; expected an integer in 1..100000")
        interval_us = self.sample_interval_s * 1e6
        if not (1_000 <= interval_us <= DAY_US) or DAY_US % round(interval_us) != 0 or abs(interval_us - round(interval_us)) > 1e-6:
            raise ValueError(
                f"sample_interval_s={self.sample_interval_s!r} is invalid; expected a whole number of "
                "microseconds >= 0.001 s that divides a day (e.g. 0.1, 0.5, 1, 5, 60, 300)"
            )

    @property
    def interval_us(self) -> int:
        return round(self.sample_interval_s * 1e6)

    @property
    def samples_per_day(self) -> int:
        return DAY_US // self.interval_us

    @property
    def sensor_ids(self) -> list[str]:
        return [sensor_id(i) for i in range(self.n_sensors)]


def sensor_id(index: int) -> str:
    return f"sensor_{index + 1:03d}"


def day_start_us(day: dt.date) -> int:
    return (day - _EPOCH).days * DAY_US


# -- counter-based randomness ---------------------------------------------------
def _key(*parts: int) -> np.uint64:
    """A 64-bit key for a tuple of small integers (stable across platforms and runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(key: np.uint64, k: np.ndarray) -> np.ndarray:
    """U(0, 1) (never exactly 0) for each counter in ``k``."""
    with np.errstate(over="ignore"):
        x = _mix(k.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + key)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def _normal(key_a: np.uint64, key_b: np.uint64, k: np.ndarray) -> np.ndarray:
    """Standard normal for each counter in ``k`` (Box-Muller over two hash streams)."""
    u1 = _uniform(key_a, k)
    u2 = _uniform(key_b, k)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


# -- per-sensor constants and per-day episodes -----------------------------------
@dataclasses.dataclass(frozen=True)
class _Sensor:
    index: int
    base_temp: float
    diurnal_amp: float
    base_humidity: float
    base_pressure: float
    pressure_phase: float
    vibration_mean: float
    battery_life_days: float
    battery_phase_days: float
    battery_floor: float


def _sensor(seed: int, index: int) -> _Sensor:
    rng = np.random.default_rng([seed, index, 0x5E45])
    return _Sensor(
        index=index,
        base_temp=float(rng.uniform(18, 26)),
        diurnal_amp=float(rng.uniform(1.5, 4.0)),
        base_humidity=float(rng.uniform(40, 60)),
        base_pressure=float(rng.uniform(1008, 1020)),
        pressure_phase=float(rng.uniform(0, 2 * np.pi)),
        vibration_mean=float(rng.uniform(0.1, 0.5)),
        battery_life_days=float(rng.uniform(20, 90)),
        battery_phase_days=float(rng.uniform(0, 90)),
        battery_floor=float(rng.uniform(1, 8)),
    )


@dataclasses.dataclass(frozen=True)
class _Episode:
    kind: str
    start_us: int
    end_us: int  # exclusive
    magnitude: float
    metric: str | None
    origin_day: int  # the day (ordinal) whose generator drew it: part of the label id


_WEATHER_SD = 0.4
_MIN_GAP_US = 15 * 60 * 1_000_000  # short episodes of a sensor are >= 15 min apart


def _weather(seed: int, index: int, day_ordinal: int) -> float:
    return float(np.random.default_rng([seed, index, day_ordinal, 0x3EA7]).normal(0, _WEATHER_SD))


def _day_episodes(seed: int, index: int, day_ordinal: int, rates: FaultRates, interval_us: int) -> list[_Episode]:
    """The short episodes drawn for one sensor-day, non-overlapping, inside the day."""
    rng = np.random.default_rng([seed, index, day_ordinal, 0xE915])
    d0 = day_ordinal * DAY_US
    # (kind, count, duration range in seconds, metric)
    specs = [
        ("outage", rng.poisson(rates.outage), (120, 7200), None),
        ("flatline", rng.poisson(rates.flatline), (600, 10800), "temperature"),
        ("sensor_fault", rng.poisson(rates.sensor_fault), (1, 8), "temperature"),
        ("high_vibration", rng.poisson(rates.high_vibration), (120, 1800), "vibration"),
        ("clock_skew", rng.poisson(rates.clock_skew), (600, 7200), None),
        ("spike", rng.poisson(rates.spike), (1, 3), "temperature"),
    ]
    episodes: list[_Episode] = []
    taken: list[tuple[int, int]] = []
    for kind, count, (lo, hi), metric in specs:
        for _ in range(int(count)):
            dur_s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if kind in ("spike", "sensor_fault"):
                dur_us = int(round(dur_s)) * interval_us  # a number of readings
            else:
                dur_us = int(dur_s * 1e6) // interval_us * interval_us or interval_us
            # 20 minutes of margin at both ends keep windows and skew inside the day.
            margin = 20 * 60 * 1_000_000
            span = DAY_US - 2 * margin - dur_us
            start = d0 + margin + int(rng.uniform(0, max(span, 1))) // interval_us * interval_us
            end = start + dur_us
            magnitude = _magnitude(kind, rng)
            if any(start < e + _MIN_GAP_US and s < end + _MIN_GAP_US for s, e in taken):
                continue  # overlapping episodes would hide each other's ground truth
            if kind != "high_vibration":
                taken.append((start, end))
            episodes.append(_Episode(kind, start, end, magnitude, metric, day_ordinal))
    return episodes


def _magnitude(kind: str, rng: np.random.Generator) -> float:
    if kind == "spike":
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(8, 35))
    if kind == "sensor_fault":
        return float(rng.choice([-127.0, 500.0, 327.67, 150.0]))
    if kind == "high_vibration":
        return float(rng.uniform(2.5, 8.0))
    if kind == "clock_skew":
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 3.0))
    return 0.0


def _drift_episodes(seed: int, index: int, day_ordinal: int, rates: FaultRates) -> list[_Episode]:
    """Drift episodes overlapping a day; each starts on one of the two previous days or this one."""
    out = []
    for origin in (day_ordinal - 2, day_ordinal - 1, day_ordinal):
        rng = np.random.default_rng([seed, index, origin, 0xD71F])
        if rng.uniform() >= rates.drift:
            continue
        start = origin * DAY_US + int(rng.uniform(0, DAY_US)) // 1_000_000 * 1_000_000
        duration = int(rng.uniform(6, 48) * 3_600) * 1_000_000
        magnitude = float(rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 6.0))
        if start < (day_ordinal + 1) * DAY_US and start + duration > day_ordinal * DAY_US:
            out.append(_Episode("drift", start, start + duration, magnitude, "temperature", origin))
    return out


def _battery(s: _Sensor, t_us: np.ndarray) -> np.ndarray:
    """Battery level: linear drain from 100 % to the floor over each life, then replaced."""
    life_us = s.battery_life_days * DAY_US
    age = np.mod(t_us + s.battery_phase_days * DAY_US, life_us) / life_us
    level = 100.0 - (100.0 - s.battery_floor) * age
    return np.floor(level * 10.0) / 10.0  # 0.1 % steps, monotone within a life


def _battery_episode(s: _Sensor, day_ordinal: int, threshold: float = 20.0) -> _Episode | None:
    """The low-battery episode (level below ``threshold`` until replacement) overlapping a day."""
    life_us = s.battery_life_days * DAY_US
    d0 = day_ordinal * DAY_US
    shifted = d0 + s.battery_phase_days * DAY_US
    for cycle in (np.floor(shifted / life_us), np.floor(shifted / life_us) + 1):
        replaced = cycle * life_us - s.battery_phase_days * DAY_US  # start of this life
        # first 0.1 % step below the threshold: level < threshold
        frac = (100.0 - threshold) / (100.0 - s.battery_floor)
        low_from = replaced + frac * life_us
        next_life = replaced + life_us
        if low_from < d0 + DAY_US and next_life > d0:
            start = int(np.ceil(low_from))
            return _Episode("low_battery", start, int(np.ceil(next_life)), threshold, "battery_level", int(cycle))
    return None


# -- generation ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Simulated:
    """A slice of simulated data: readings in delivery order, and the ground truth."""

    readings: pa.Table  # schemas.READINGS, in arrival order (duplicates, disorder, skew)
    labels: pa.Table  # schemas.FAULT_LABELS


def simulate_day(params: FleetParams, day: dt.date, sensors: Sequence[int] | None = None) -> Simulated:
    """Readings and labels of one UTC day (for the given sensor indices, default all)."""
    start = day_start_us(day)
    return simulate(params, start, start + DAY_US, sensors)


def simulate(
    params: FleetParams, start_us: int, end_us: int, sensors: Sequence[int] | None = None
) -> Simulated:
    """Readings whose nominal sample time is in ``[start_us, end_us)``; labels overlapping it.

    Labels are the whole episodes (their start and end may lie outside the
    slice), each with a stable ``label_id``, so that a consumer can collect
    them from several days and drop duplicates by id.
    """
    if end_us < start_us:
        raise ValueError(f"end {end_us} is before start {start_us}")
    sensors = range(params.n_sensors) if sensors is None else sensors
    pieces = list(_iter_slices(params, start_us, end_us, sensors))
    readings = [p[0] for p in pieces if p[0].num_rows]
    labels = [p[1] for p in pieces if p[1].num_rows]
    return Simulated(
        readings=pa.concat_tables(readings) if readings else READINGS.empty_table(),
        labels=_dedupe_labels(pa.concat_tables(labels)) if labels else FAULT_LABELS.empty_table(),
    )


def iter_day_chunks(params: FleetParams, day: dt.date, sensors_per_chunk: int = 50) -> Iterator[Simulated]:
    """One day in chunks of sensors, for writers that must not hold the day in memory."""
    for lo in range(0, params.n_sensors, sensors_per_chunk):
        yield simulate_day(params, day, range(lo, min(lo + sensors_per_chunk, params.n_sensors)))


def _dedupe_labels(labels: pa.Table) -> pa.Table:
    ids = labels.column("label_id").to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    return labels.take(np.sort(first))


def _iter_slices(params: FleetParams, start_us: int, end_us: int, sensors: Sequence[int]):
    first_day = start_us // DAY_US
    last_day = (end_us - 1) // DAY_US
    for index in sensors:
        s = _sensor(params.seed, index)
        for day_ordinal in range(first_day, last_day + 1):
            d0 = day_ordinal * DAY_US
            lo = max(start_us, d0)
            hi = min(end_us, d0 + DAY_US)
            if hi > lo:
                yield _sensor_day(params, s, day_ordinal, lo, hi)


def _episodes(params: FleetParams, s: _Sensor, day_ordinal: int) -> list[_Episode]:
    eps = _day_episodes(params.seed, s.index, day_ordinal, params.faults, params.interval_us)
    eps += _drift_episodes(params.seed, s.index, day_ordinal, params.faults)
    battery = _battery_episode(s, day_ordinal)
    if battery is not None:
        eps.append(battery)
    return eps


def _sensor_day(params: FleetParams, s: _Sensor, day_ordinal: int, lo_us: int, hi_us: int) -> tuple[pa.Table, pa.Table]:
    seed, idx, rates = params.seed, s.index, params.faults
    step = params.interval_us
    d0 = day_ordinal * DAY_US
    k = np.arange(-(-(lo_us - d0) // step), -(-(hi_us - d0) // step), dtype=np.int64)  # sample indices
    t = d0 + k * step  # nominal sample times (us)
    key = lambda stream: _key(seed, idx, day_ordinal, stream)  # noqa: E731

    # Physics.
    hours = (t % DAY_US) / 3.6e9
    frac = (t - d0) / DAY_US
    w_prev, w_now, w_next = (_weather(seed, idx, day_ordinal + o) for o in (-1, 0, 1))
    # cosine interpolation between day midpoints keeps weather smooth across midnight
    weather = np.where(
        frac < 0.5,
        w_prev + (w_now - w_prev) * (1 - np.cos(np.pi * (frac + 0.5))) / 2,
        w_now + (w_next - w_now) * (1 - np.cos(np.pi * (frac - 0.5))) / 2,
    )
    true_temp = s.base_temp + s.diurnal_amp * np.sin(2 * np.pi * (hours - 9.0) / 24.0) + weather
    temp = true_temp + 0.15 * _normal(key(_S_TEMP), key(_S_TEMP2), k)
    humidity = np.clip(
        s.base_humidity - 1.5 * (true_temp - s.base_temp) + 0.8 * _normal(key(_S_HUM), key(_S_HUM2), k), 5.0, 100.0
    )
    days_f = t / DAY_US
    pressure = (
        s.base_pressure
        + 4.0 * np.sin(2 * np.pi * days_f / 3.7 + s.pressure_phase)
        + 0.6 * np.sin(4 * np.pi * days_f)
        + 0.1 * _normal(key(_S_PRES), key(_S_PRES2), k)
    )
    vibration = np.abs(s.vibration_mean + 0.03 * _normal(key(_S_VIB), key(_S_VIB2), k))
    battery = _battery(s, t)
    ts = t.copy()
    keep = _uniform(key(_S_DROP), k) >= rates.drop_rate

    # Faults, applied in a fixed order; labels record what was injected.
    labels = []
    for ep in sorted(_episodes(params, s, day_ordinal), key=lambda e: (e.start_us, e.kind)):
        m = (t >= ep.start_us) & (t < ep.end_us)
        if ep.kind == "drift":
            ramp = np.clip((t - ep.start_us) / (ep.end_us - ep.start_us), 0, 1)
            temp = np.where(m, temp + ep.magnitude * ramp, temp)
        elif ep.kind == "spike":
            temp = np.where(m, temp + ep.magnitude, temp)
        elif ep.kind == "sensor_fault":
            temp = np.where(m, ep.magnitude, temp)
        elif ep.kind == "flatline":
            stuck_t, stuck_h = _stuck_values(s, ep, seed, step)
            temp = np.where(m, stuck_t, temp)
            humidity = np.where(m, stuck_h, humidity)
        elif ep.kind == "high_vibration":
            level = ep.magnitude * (1 + 0.1 * _normal(key(_S_VIB), key(_S_TEMP), k))
            vibration = np.where(m, np.maximum(level, 2.2), vibration)
        elif ep.kind == "outage":
            keep &= ~m
        elif ep.kind == "clock_skew":
            ts = np.where(m, ts + int(ep.magnitude * 1e6), ts)
        labels.append(ep)

    # Faults on dropped readings are unobservable: keep the ground truth honest.
    if labels:
        labels = [ep for ep in labels if _observable(ep, t, keep)]

    sel = np.flatnonzero(keep)
    n = len(sel)
    # Delivery faults: re-sent duplicates and late (swapped) readings.
    order = sel
    n_dup = n_swap = 0
    if n:
        dup = sel[_uniform(key(_S_DUP), k[sel]) < rates.duplicate_rate]
        n_dup = len(dup)
        order = np.concatenate([sel, dup])
        pos = np.argsort(np.concatenate([np.arange(n) * 2, np.searchsorted(sel, dup) * 2 + 1]), kind="stable")
        order = order[pos]  # a duplicate arrives right after its original
        # A late reading arrives about five readings after its turn.
        late = _uniform(key(_S_SWAP), k[order]) < rates.out_of_order_rate
        n_swap = int(late.sum())
        order = order[np.argsort(np.arange(len(order)) + np.where(late, 5.5, 0.0), kind="stable")]

    table = pa.Table.from_arrays(
        [
            _constant_strings(sensor_id(idx), len(order)),
            pa.array(ts[order], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(np.round(temp[order], 3)),
            pa.array(np.round(humidity[order], 3)),
            pa.array(np.round(pressure[order], 3)),
            pa.array(np.round(vibration[order], 4)),
            pa.array(battery[order]),
            _constant_strings(SOURCE, len(order)),
            pa.nulls(len(order), pa.int64()),
        ],
        schema=READINGS,
    )
    label_rows = [_label_row(params, idx, ep, t, keep) for ep in labels]
    for kind, count in (("duplicates", n_dup), ("out_of_order", n_swap)):
        if count:
            label_rows.append(
                dict(
                    label_id=_label_id(params, idx, kind, day_ordinal, lo_us),
                    sensor_id=sensor_id(idx), fault_type=kind, metric=None,
                    start_ts=int(t[0]), end_ts=int(t[-1]) + step, magnitude=float(count), n_readings=int(count),
                )
            )  # fmt: skip
    return table, _labels_table(label_rows)


def _constant_strings(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([value])).cast(pa.string())


def _stuck_values(s: _Sensor, ep: _Episode, seed: int, step: int) -> tuple[float, float]:
    """The value a stuck sensor repeats: its reading just before the episode, to 0.01."""
    rng = np.random.default_rng([seed, s.index, ep.start_us, 0x57C4])
    hours = (ep.start_us % DAY_US) / 3.6e9
    base = s.base_temp + s.diurnal_amp * np.sin(2 * np.pi * (hours - 9.0) / 24.0)
    return round(float(base + rng.normal(0, 0.15)), 2), round(float(s.base_humidity + rng.normal(0, 0.8)), 1)


def _observable(ep: _Episode, t: np.ndarray, keep: np.ndarray) -> bool:
    if ep.kind in ("outage", "drift", "low_battery"):
        return True
    m = (t >= ep.start_us) & (t < ep.end_us)
    if not m.any():  # the episode lies outside this slice; another slice observes it
        return True
    return bool((m & keep).any())


def _label_id(params: FleetParams, idx: int, kind: str, origin: int, start: int) -> str:
    raw = f"{params.seed}|{sensor_id(idx)}|{kind}|{origin}|{start}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def _label_row(params: FleetParams, idx: int, ep: _Episode, t: np.ndarray, keep: np.ndarray) -> dict:
    if ep.kind in ("drift", "low_battery"):
        n = (ep.end_us - ep.start_us) // params.interval_us
    else:
        m = (t >= ep.start_us) & (t < ep.end_us)
        n = int((m & keep).sum()) if ep.kind != "outage" else int(m.sum())
    return dict(
        label_id=_label_id(params, idx, ep.kind, ep.origin_day, ep.start_us),
        sensor_id=sensor_id(idx),
        fault_type=ep.kind,
        metric=ep.metric,
        start_ts=ep.start_us,
        end_ts=ep.end_us,
        magnitude=ep.magnitude,
        n_readings=int(n),
    )


def _labels_table(rows: list[dict]) -> pa.Table:
    if not rows:
        return FAULT_LABELS.empty_table()
    cols = {f.name: [r[f.name] for r in rows] for f in FAULT_LABELS}
    arrays = [
        pa.array(cols[f.name], pa.int64()).cast(f.type) if f.name in ("start_ts", "end_ts") else pa.array(cols[f.name], f.type)
        for f in FAULT_LABELS
    ]
    return pa.Table.from_arrays(arrays, schema=FAULT_LABELS)
