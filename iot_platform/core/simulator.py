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
import fractions
import functools
import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from iot_platform.core.reading_rules import repeated_strings
from iot_platform.core.schemas import FAULT_LABELS, READINGS
from iot_platform.core.calendar import DAY_US, day_start_us  # noqa: F401 - re-exported

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
SOURCE = "simulator"

# Streams of per-reading randomness; each gets its own hash key. The white noise of the four metrics
# takes two pairs of them (_normal_pair over TEMP/TEMP2 and PRES/PRES2); HUM and HUM2 are no longer drawn,
# VIB and VIB2 only in high-vibration episodes: the keys of the others stay as they were.
_S_TEMP, _S_TEMP2, _S_HUM, _S_HUM2, _S_PRES, _S_PRES2, _S_VIB, _S_VIB2, _S_DROP, _S_DUP, _S_SWAP = range(11)
_N_STREAMS = 11


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


# -- counter-based randomness ---------------------------------------------------
def _key(*parts: int) -> np.uint64:
    """A 64-bit key for a tuple of small integers (stable across platforms and runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _mix(x: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """splitmix64 finalizer, in place on a fresh uint64 array (wrapping arithmetic).

    In place, with one ``scratch`` array of x's shape for the shifts, because it
    runs over every reading several times: temporaries would double the memory
    traffic of the noise (and each is megabytes the kernel maps and zeroes).
    """
    tmp = np.empty_like(x) if scratch is None else scratch
    x ^= np.right_shift(x, np.uint64(30), out=tmp)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= np.right_shift(x, np.uint64(27), out=tmp)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= np.right_shift(x, np.uint64(31), out=tmp)
    return x


def _hashed(key: np.uint64 | np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mixed hash of each (key, counter), and a free uint64 array of its shape."""
    with np.errstate(over="ignore"):
        x = k.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + key
    scratch = np.empty_like(x)
    return _mix(x, scratch), scratch


def _uniform(key: np.uint64 | np.ndarray, k: np.ndarray) -> np.ndarray:
    """U(0, 1) (never exactly 0) for each counter in ``k``.

    ``key`` broadcasts against ``k``: a column of per-sensor keys and a row of
    sample indices give the (sensors x samples) grid in one call; each value
    depends only on its own key and counter.
    """
    return _unit(key, k, 1.0 / 9007199254740992.0)


def _centered(key: np.uint64 | np.ndarray, k: np.ndarray) -> np.ndarray:
    """``2 * _uniform(key, k) - 1``, bit for bit (doubling is exact): U(-1, 1), never exactly 0."""
    u = _unit(key, k, 2.0 / 9007199254740992.0)
    u -= 1.0
    return u


def _unit(key: np.uint64 | np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
    """``(j + 0.5) * scale`` for the top 53 bits ``j`` of each hash, computed in the hash's scratch array."""
    x, scratch = _hashed(key, k)
    x >>= np.uint64(11)
    u = np.add(x, 0.5, out=scratch.view(np.float64))  # the same as x.astype(float) + 0.5: no other pass
    u *= scale
    return u


def _below(key: np.uint64 | np.ndarray, k: np.ndarray, rate: float) -> np.ndarray:
    """``_uniform(key, k) < rate``, exactly, for ``0 <= rate < 0.5``, compared on the hash bits.

    ``_uniform`` is ``(j + 0.5) / 2**53`` with ``j = x >> 11``; for ``j < 2**52``
    (every u below 0.5) the sum is exact, so ``u < rate`` iff ``j < ceil(rate 2**53 - 0.5)``
    iff ``x < that << 11``: no float conversion of the whole grid.
    """
    threshold = math.ceil(fractions.Fraction(rate) * 2**53 - fractions.Fraction(1, 2))
    x, _ = _hashed(key, k)
    return x < np.uint64(max(threshold, 0) << 11)


def _normal(key_a: np.uint64 | np.ndarray, key_b: np.uint64 | np.ndarray, k: np.ndarray) -> np.ndarray:
    """Standard normal for each counter in ``k`` (Box-Muller over two hash streams)."""
    r = _uniform(key_a, k)
    np.log(r, out=r)
    r *= -2.0
    np.sqrt(r, out=r)
    angle = _uniform(key_b, k)
    angle *= 2.0 * np.pi
    np.cos(angle, out=angle)
    r *= angle
    return r


_RETRY = np.int64(1 << 40)  # counter offset of each retry of a rejected pair: above any sample index of a day


def _normal_pair(key_a: np.uint64 | np.ndarray, key_b: np.uint64 | np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard normals for each counter in ``k`` (Marsaglia's polar method over two hash streams).

    Half the hashing of two ``_normal`` calls and no trigonometry (``cos`` cost
    more than the hashing): a point (u, v) uniform in the square is kept when
    it falls inside the unit disc, and ``u f, v f`` with ``f = sqrt(-2 ln s / s)``
    are the normals. A point outside (21 %) is drawn again from the same keys
    at counter ``k + j * 2**40`` (attempt j), for those cells only: each value
    still depends only on its keys and counter, so a slice equals the same
    cells of the whole day.
    """
    u, v = _centered(key_a, k), _centered(key_b, k)
    s = u * u
    f = v * v  # f: free after this sum, until it holds the factor
    s += f
    bad = np.flatnonzero(s >= 1.0)  # s > 0: u and v are never exactly 0 (odd multiples of 2**-53)
    if bad.size:
        if s.ndim == 2 and np.shape(key_a) == np.shape(key_b) == (s.shape[0], 1) and np.shape(k) == (s.shape[1],):
            rows, cols = np.divmod(bad, s.shape[1])  # the (sensors x samples) grid: 1-D gathers
            ka, kb, kk = key_a[:, 0][rows], key_b[:, 0][rows], k[cols]
        else:
            at = np.unravel_index(bad, s.shape)
            ka, kb, kk = (np.broadcast_to(a, s.shape)[at] for a in (key_a, key_b, k))
        # The retried cells' values are gathered in arrays of their own (in the order of ``bad``) and
        # written into the grid once, in order: scattering each attempt into the grid cost as much as
        # hashing it. Each attempt writes all its cells; a cell still outside is overwritten by a later one.
        left = None  # positions in ``bad`` of the cells still outside the disc (None: all of them)
        attempt = 1
        while True:
            counter = kk + attempt * _RETRY
            uu, vv = _centered(ka, counter), _centered(kb, counter)
            ss = uu * uu
            ss += vv * vv
            if left is None:
                ru, rv, rs = uu, vv, ss
            else:
                ru[left], rv[left], rs[left] = uu, vv, ss
            still = np.flatnonzero(ss >= 1.0)  # index gathers: a random boolean mask mispredicts every branch
            if not still.size:
                break
            left = still if left is None else left[still]
            ka, kb, kk = ka[still], kb[still], kk[still]
            attempt += 1
        for grid, values in ((u, ru), (v, rv), (s, rs)):
            grid.reshape(-1)[bad] = values
    np.log(s, out=f)
    f *= -2.0
    f /= s
    np.sqrt(f, out=f)
    u *= f
    v *= f
    return u, v


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


# Per-sensor and per-sensor-day draws are pure and cost a numpy Generator each
# (tens of microseconds): memoized, a stream of micro-batches of the same day
# pays for them once. Sizes cover a day and its neighbours for a few thousand
# sensors; typed, because ``repr`` of a numpy integer index differs from an
# ``int``'s and so do the hash keys drawn from it.
_CACHE = 1 << 13


@functools.lru_cache(maxsize=_CACHE, typed=True)
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


@functools.lru_cache(maxsize=3 * _CACHE, typed=True)
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


def _battery(life_days: np.ndarray, phase_days: np.ndarray, floor: np.ndarray, t_us: np.ndarray) -> np.ndarray:
    """Battery level: linear drain from 100 % to the floor over each life, then replaced.

    The sensor constants are columns and ``t_us`` a row of evenly spaced times: one row of
    levels per sensor. The level changes a few dozen times a day (0.1 % steps), so it is
    evaluated at every ``stride``-th sample, and sample by sample only over the stretches
    whose two ends differ: within a life the level never rises, so equal ends hold the same
    level between them; a replacement (lives last 20 days and more, a stretch at most
    ``_STRETCH_US``) makes the later end higher. Every value is the one ``_battery_levels``
    gives that sample, for a few percent of the work.
    """
    n, m = len(life_days), len(t_us)
    step = int(t_us[1] - t_us[0]) if m > 1 else 1
    stride = min(64, _STRETCH_US // step)
    if stride < 4 or m < 4 * stride:
        return _battery_levels(life_days, phase_days, floor, t_us)
    ends = np.arange(0, m, stride)
    if ends[-1] != m - 1:
        ends = np.append(ends, m - 1)
    at_ends = _battery_levels(life_days, phase_days, floor, t_us[ends])  # (n, len(ends))
    lengths = np.diff(ends)
    out = np.repeat(at_ends, np.append(lengths, 1), axis=1)
    rows, stretch = np.nonzero(at_ends[:, :-1] != at_ends[:, 1:])
    if len(rows):
        inner = lengths[stretch] - 1  # the samples strictly between the two ends
        first = np.repeat(ends[stretch] + 1 - np.cumsum(inner) + inner, inner)
        cols = first + np.arange(first.size)
        rows = np.repeat(rows, inner)
        sensors = tuple(np.asarray(c, dtype=np.float64).reshape(n)[rows] for c in (life_days, phase_days, floor))
        out[rows, cols] = _battery_levels(*sensors, t_us[cols])
    return out


# the longest stretch of samples _battery skips: far shorter than a battery's life (20 days and more)
_STRETCH_US = 3_600_000_000


def _battery_levels(life_days: np.ndarray, phase_days: np.ndarray, floor: np.ndarray, t_us: np.ndarray) -> np.ndarray:
    """The battery level of each sensor (broadcast against ``t_us``) at each time: the formula itself."""
    life_us = life_days * DAY_US
    age = np.mod(t_us + phase_days * DAY_US, life_us) / life_us
    level = 100.0 - (100.0 - floor) * age
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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a sensor-day needs besides its per-reading noise: drawn once, shared by all its slices."""

    sensor: _Sensor
    keys: tuple[int, ...]  # hash key of each noise stream (_S_TEMP ... _S_SWAP)
    episodes: tuple[_Episode, ...]  # in the order faults are applied and labelled: (start, kind)
    label_ids: tuple[str, ...]  # one per episode


@functools.lru_cache(maxsize=_CACHE, typed=True)
def _plan(seed: int, index: int, day_ordinal: int, rates: FaultRates, interval_us: int) -> _Plan:
    """The sensor-day's constants, noise keys and episodes (short ones, drift, low battery)."""
    s = _sensor(seed, index)
    episodes = _day_episodes(seed, index, day_ordinal, rates, interval_us)
    episodes += _drift_episodes(seed, index, day_ordinal, rates)
    battery = _battery_episode(s, day_ordinal)
    if battery is not None:
        episodes.append(battery)
    episodes.sort(key=lambda e: (e.start_us, e.kind))
    return _Plan(
        sensor=s,
        keys=tuple(int(_key(seed, index, day_ordinal, stream)) for stream in range(_N_STREAMS)),
        episodes=tuple(episodes),
        label_ids=tuple(_label_id(seed, index, e.kind, e.origin_day, e.start_us) for e in episodes),
    )


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

    Readings come sensor by sensor (in the order of ``sensors``), day by day.
    They are computed a block of sensors at a time, on a (sensors x samples)
    grid: a 30-second micro-batch of a thousand sensors is a few numpy calls
    over the whole grid, not a few dozen per sensor.
    """
    if end_us < start_us:
        raise ValueError(f"end {end_us} is before start {start_us}")
    indices = list(range(params.n_sensors) if sensors is None else sensors)
    days = [
        (d, max(start_us, d * DAY_US), min(end_us, (d + 1) * DAY_US))
        for d in range(start_us // DAY_US, (end_us - 1) // DAY_US + 1)
    ]
    days = [(d, lo, hi) for d, lo, hi in days if hi > lo]  # (day ordinal, its part of the slice)
    samples = sum(len(_sample_indices(d, lo, hi, params.interval_us)) for d, lo, hi in days)  # per sensor
    per_block = max(1, _BLOCK_CELLS // max(samples, 1))
    readings: list[pa.Table] = []
    labels: list[_Label] = []
    for first in range(0, len(indices) if days else 0, per_block):
        block_indices = indices[first : first + per_block]
        block = _by_sensor([_block(params, block_indices, d, lo, hi) for d, lo, hi in days])
        readings.append(_readings_table(block_indices, block))
        labels += (label for sensor_labels in block.labels for label in sensor_labels)
    return Simulated(
        readings=pa.concat_tables(readings) if readings else READINGS.empty_table(),
        labels=_labels_table(labels),
    )


def iter_day_chunks(params: FleetParams, day: dt.date, sensors_per_chunk: int = 50) -> Iterator[Simulated]:
    """One day in chunks of sensors, for writers that must not hold the day in memory."""
    for lo in range(0, params.n_sensors, sensors_per_chunk):
        yield simulate_day(params, day, range(lo, min(lo + sensors_per_chunk, params.n_sensors)))


# (sensor, sample) cells computed at once: enough that numpy's cost per call
# vanishes, few enough that a block's dozen arrays stay a few MB each.
_BLOCK_CELLS = 1 << 18


class _Label(NamedTuple):
    """A row of schemas.FAULT_LABELS (same fields, same order)."""

    label_id: str
    sensor_id: str
    fault_type: str
    metric: str | None
    start_ts: int
    end_ts: int
    magnitude: float
    n_readings: int


@dataclasses.dataclass(frozen=True)
class _Block:
    """Readings and labels of a block of sensors, in delivery order.

    ``rows`` is the position in the block of each reading's sensor (ascending:
    a sensor's readings are contiguous); ``columns`` are ts, temperature,
    humidity, pressure, vibration and battery level; ``labels`` has one list
    per sensor.
    """

    rows: np.ndarray
    columns: tuple[np.ndarray, ...]
    labels: list[list[_Label]]


def _sample_indices(day_ordinal: int, lo_us: int, hi_us: int, step: int) -> np.ndarray:
    """Indices within the day of the samples whose nominal time is in ``[lo_us, hi_us)``."""
    d0 = day_ordinal * DAY_US
    return np.arange(-(-(lo_us - d0) // step), -(-(hi_us - d0) // step), dtype=np.int64)


class _Rows(NamedTuple):
    """What the rows of a slice of a day share: sample indices and times, and the time-only terms of the physics."""

    k: np.ndarray  # sample indices within the day
    t: np.ndarray  # their nominal times (us)
    mid: int  # samples before it are in the first half of the day
    weather_mix: np.ndarray  # the weight of the later day midpoint's weather (cosine interpolation)
    diurnal: np.ndarray  # sin of the diurnal cycle (peak mid-afternoon)
    synoptic: np.ndarray  # the synoptic pressure cycle's phase, before the sensor's own
    semidiurnal: np.ndarray  # the semi-diurnal pressure term (hPa)


@functools.lru_cache(maxsize=4)  # a day being built, and the micro-batches of now
def _rows(day_ordinal: int, lo_us: int, hi_us: int, step: int) -> _Rows:
    """The slice's shared rows, computed once for all its blocks of sensors (and the calls that
    simulate the same day a few sensors at a time): each costs a transcendental per sample."""
    d0 = day_ordinal * DAY_US
    k = _sample_indices(day_ordinal, lo_us, hi_us, step)
    t = d0 + k * step
    hours = (t % DAY_US) / 3.6e9
    frac = (t - d0) / DAY_US
    # cosine interpolation between day midpoints keeps weather smooth across midnight
    mid = int(np.searchsorted(frac, 0.5))
    mix = np.empty(len(k))
    mix[:mid] = (1 - np.cos(np.pi * (frac[:mid] + 0.5))) / 2
    mix[mid:] = (1 - np.cos(np.pi * (frac[mid:] - 0.5))) / 2
    days_f = t / DAY_US
    rows = _Rows(k, t, mid, mix, np.sin(2 * np.pi * (hours - 9.0) / 24.0), 2 * np.pi * days_f / 3.7, 0.6 * np.sin(4 * np.pi * days_f))
    for a in rows:
        if isinstance(a, np.ndarray):
            a.setflags(write=False)  # shared by every caller
    return rows


def _block(params: FleetParams, indices: Sequence[int], day_ordinal: int, lo_us: int, hi_us: int) -> _Block:
    """Readings and labels of ``[lo_us, hi_us)`` within one day, for a block of sensors.

    The sensors share their sample times, so noise, physics and delivery
    faults are computed on the (sensors x samples) grid, each sensor a row;
    fault episodes (few overlap a short slice) touch their sensor's row only.
    Every value is the one the sensor would get alone: the grid only batches
    element-wise arithmetic.
    """
    seed, rates, step = params.seed, params.faults, params.interval_us
    d0 = day_ordinal * DAY_US
    rows_ = _rows(day_ordinal, lo_us, hi_us, step)
    k, t, mid = rows_.k, rows_.t, rows_.mid
    n, m = len(indices), len(k)
    plans = [_plan(seed, i, day_ordinal, rates, step) for i in indices]
    keys = np.array([p.keys for p in plans], dtype=np.uint64).reshape(n, _N_STREAMS)

    def key(stream: int) -> np.ndarray:
        return keys[:, stream : stream + 1]

    def column(values: list[float]) -> np.ndarray:
        return np.array(values, dtype=np.float64).reshape(n, 1)

    def const(name: str) -> np.ndarray:
        return column([getattr(p.sensor, name) for p in plans])

    def weather(offset: int) -> np.ndarray:
        return column([_weather(seed, i, day_ordinal + offset) for i in indices])

    # Physics.
    # In place, with as few (sensors x samples) temporaries as the formulas allow: each is
    # megabytes the kernel must map and zero. Every value is bit for bit the plain
    # formula's: sums are reordered only where IEEE addition commutes (a + b == b + a), and
    # ``(a * b) / 2`` becomes ``a * (b / 2)`` (halving is exact and commutes with rounding).
    w = np.empty((n, m))
    if mid > 0:
        w_prev, w_now = weather(-1), weather(0)
        np.multiply(w_now - w_prev, rows_.weather_mix[:mid], out=w[:, :mid])
        w[:, :mid] += w_prev
    if mid < m:
        w_now, w_next = weather(0), weather(1)
        np.multiply(w_next - w_now, rows_.weather_mix[mid:], out=w[:, mid:])
        w[:, mid:] += w_now
    base_temp = const("base_temp")
    # true_temp = base_temp + diurnal_amp * sin(...) + w
    true_temp = const("diurnal_amp") * rows_.diurnal
    true_temp += base_temp
    true_temp += w
    # white noise: a pair of normals per hash-stream pair (temperature and humidity, pressure and vibration)
    z_temp, z_hum = _normal_pair(key(_S_TEMP), key(_S_TEMP2), k)
    z_pres, z_vib = _normal_pair(key(_S_PRES), key(_S_PRES2), k)
    temp = z_temp  # true_temp + 0.15 * z_temp
    temp *= 0.15
    temp += true_temp
    humidity = w  # clip(base_humidity - 1.5 * (true_temp - base_temp) + 0.8 * z_hum, 5, 100)
    np.subtract(true_temp, base_temp, out=humidity)
    humidity *= 1.5
    np.subtract(const("base_humidity"), humidity, out=humidity)
    z_hum *= 0.8
    humidity += z_hum
    np.clip(humidity, 5.0, 100.0, out=humidity)
    del true_temp, w
    # pressure = base_pressure + 4 sin(2 pi days / 3.7 + phase) + 0.6 sin(4 pi days) + 0.1 z_pres
    pressure = np.add(rows_.synoptic, const("pressure_phase"))
    np.sin(pressure, out=pressure)
    pressure *= 4.0
    pressure += const("base_pressure")
    pressure += rows_.semidiurnal
    z_pres *= 0.1
    pressure += z_pres
    vibration = z_vib  # abs(vibration_mean + 0.03 * z_vib)
    vibration *= 0.03
    vibration += const("vibration_mean")
    np.abs(vibration, out=vibration)
    battery = _battery(const("battery_life_days"), const("battery_phase_days"), const("battery_floor"), t)
    ts = None  # the nominal times, until a clock skew gives some row times of its own
    keep = _below(key(_S_DROP), k, rates.drop_rate)
    np.logical_not(keep, out=keep)  # dropped -> kept

    # Faults, applied in a fixed order per sensor. t is sorted, so an episode
    # covers the samples [a, b) of its sensor's row (empty if outside the slice).
    episodes = [(r, ep, label_id) for r, p in enumerate(plans) for ep, label_id in zip(p.episodes, p.label_ids)]
    spans = np.searchsorted(t, [(ep.start_us, ep.end_us) for _, ep, _ in episodes]).tolist() if episodes else []
    for (r, ep, _), (a, b) in zip(episodes, spans):
        if a == b:
            continue
        if ep.kind == "drift":
            temp[r, a:b] += ep.magnitude * ((t[a:b] - ep.start_us) / (ep.end_us - ep.start_us))
        elif ep.kind == "spike":
            temp[r, a:b] += ep.magnitude
        elif ep.kind == "sensor_fault":
            temp[r, a:b] = ep.magnitude
        elif ep.kind == "flatline":
            temp[r, a:b], humidity[r, a:b] = _stuck_values(plans[r].sensor, ep, seed, plans[r].episodes)
        elif ep.kind == "high_vibration":
            level = ep.magnitude * (1 + 0.1 * _normal(keys[r, _S_VIB], keys[r, _S_VIB2], k[a:b]))
            vibration[r, a:b] = np.maximum(level, 2.2)
        elif ep.kind == "outage":
            keep[r, a:b] = False
        elif ep.kind == "clock_skew":
            if ts is None:
                ts = np.repeat(t.reshape(1, m), n, axis=0)
            ts[r, a:b] += int(ep.magnitude * 1e6)

    # Labels record what was injected. Every episode of the sensor-day is
    # labelled, except one whose readings in the slice were all dropped: a
    # fault nobody could observe would make the ground truth dishonest.
    ids = [sensor_id(i) for i in indices]
    labels: list[list[_Label]] = [[] for _ in range(n)]
    for (r, ep, label_id), (a, b) in zip(episodes, spans):
        if ep.kind in ("drift", "low_battery"):
            n_readings = (ep.end_us - ep.start_us) // step
        elif a == b:  # the episode lies outside this slice; another slice observes it
            n_readings = 0
        elif ep.kind == "outage":
            n_readings = b - a
        else:
            n_readings = int(np.count_nonzero(keep[r, a:b]))
            if not n_readings:
                continue
        labels[r].append(_Label(label_id, ids[r], ep.kind, ep.metric, ep.start_us, ep.end_us, ep.magnitude, n_readings))

    # Delivery faults: re-sent duplicates and late readings, each among its sensor's readings.
    order = np.flatnonzero(keep)  # cells of the grid (row-major), in delivery order
    rows = order // m if m else order
    n_dup = n_late = np.zeros(n, np.int64)
    if len(order):
        dup = _below(key(_S_DUP), k, rates.duplicate_rate).reshape(-1)[order]
        n_dup = np.bincount(rows[dup], minlength=n)
        order, rows = np.repeat(order, 1 + dup), np.repeat(rows, 1 + dup)  # a duplicate arrives right after its original
        # A late reading arrives about five readings after its turn; the gap of
        # six between rows keeps it among its own sensor's readings.
        late = _below(key(_S_SWAP), k, rates.out_of_order_rate).reshape(-1)[order]
        n_late = np.bincount(rows[late], minlength=n)
        if n_late.any():
            order = order[np.argsort(np.arange(len(order)) + 6.0 * rows + np.where(late, 5.5, 0.0), kind="stable")]
    for r in np.flatnonzero(n_dup + n_late).tolist():
        for kind, count in (("duplicates", int(n_dup[r])), ("out_of_order", int(n_late[r]))):
            if count:
                label_id = _label_id(seed, indices[r], kind, day_ordinal, lo_us)
                labels[r].append(_Label(label_id, ids[r], kind, None, int(t[0]), int(t[-1]) + step, float(count), count))

    columns = (
        t[order - rows * m] if ts is None else ts.reshape(-1)[order],
        _rounded(temp.reshape(-1)[order], 3),
        _rounded(humidity.reshape(-1)[order], 3),
        _rounded(pressure.reshape(-1)[order], 3),
        _rounded(vibration.reshape(-1)[order], 4),
        battery.reshape(-1)[order],
    )
    return _Block(rows, columns, labels)


def _rounded(x: np.ndarray, decimals: int) -> np.ndarray:
    """``np.round(x, decimals)`` in place on a fresh array (numpy's own steps: multiply, rint, divide)."""
    return np.round(x, decimals, out=x)


def _by_sensor(days: list[_Block]) -> _Block:
    """The blocks of the days of a slice (same sensors) as one: sensor by sensor, then day by day."""
    if len(days) == 1:
        return days[0]
    n = len(days[0].labels)
    counts = np.stack([np.bincount(d.rows, minlength=n) for d in days], axis=1)  # readings per (sensor, day)
    day_starts = np.cumsum([0] + [len(d.rows) for d in days[:-1]])  # in the days' concatenation
    starts = (day_starts + np.cumsum(counts, axis=0) - counts).reshape(-1)
    lengths = counts.reshape(-1)
    take = np.arange(lengths.sum()) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return _Block(
        rows=np.repeat(np.arange(n), counts.sum(axis=1)),
        columns=tuple(np.concatenate(c)[take] for c in zip(*(d.columns for d in days))),
        labels=[[label for d in days for label in d.labels[r]] for r in range(n)],
    )


def _readings_table(indices: Sequence[int], block: _Block) -> pa.Table:
    """A block's readings as a table: one chunk of the result, not copied again."""
    ts, temp, humidity, pressure, vibration, battery = block.columns
    n = len(block.rows)
    counts = np.bincount(block.rows, minlength=len(indices))
    return pa.Table.from_arrays(
        [
            repeated_strings([sensor_id(i) for i in indices], counts),
            # the times' own buffer (building an int64 array and casting it cost as much as the four metrics)
            pa.Array.from_buffers(READINGS.field("ts").type, n, [None, pa.py_buffer(np.ascontiguousarray(ts, dtype=np.int64))]),
            *(_float_array(c) for c in (temp, humidity, pressure, vibration, battery)),
            repeated_strings([SOURCE], np.array([n])),
            pa.nulls(n, pa.int64()),
        ],
        schema=READINGS,
    )


def _float_array(x: np.ndarray) -> pa.Array:
    """A float64 array over ``x``'s own buffer: ``pa.array(x)`` without its copy (NaN stays a value)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(x), [None, pa.py_buffer(x)])


def _stuck_values(s: _Sensor, ep: _Episode, seed: int, episodes: Sequence[_Episode]) -> tuple[float, float]:
    """The values a stuck sensor repeats: about its last reading before the episode, to 0.01.

    The sensor's true temperature at the start (diurnal cycle, weather and any
    drift under way) plus one draw of noise: a pure function of the episode, so
    every slice of the day repeats the same value, and a flatline that starts
    during a drift does not open with a jump.
    """
    rng = np.random.default_rng([seed, s.index, ep.start_us, 0x57C4])
    t = ep.start_us
    day = t // DAY_US
    frac = (t - day * DAY_US) / DAY_US
    if frac < 0.5:
        w0, w1 = _weather(seed, s.index, day - 1), _weather(seed, s.index, day)
        weather = w0 + (w1 - w0) * (1 - np.cos(np.pi * (frac + 0.5))) / 2
    else:
        w0, w1 = _weather(seed, s.index, day), _weather(seed, s.index, day + 1)
        weather = w0 + (w1 - w0) * (1 - np.cos(np.pi * (frac - 0.5))) / 2
    hours = (t % DAY_US) / 3.6e9
    true_temp = s.base_temp + s.diurnal_amp * np.sin(2 * np.pi * (hours - 9.0) / 24.0) + weather
    drift = sum(
        d.magnitude * (t - d.start_us) / (d.end_us - d.start_us)
        for d in episodes
        if d.kind == "drift" and d.start_us <= t < d.end_us
    )
    temp = true_temp + drift + rng.normal(0, 0.15)
    humidity = s.base_humidity - 1.5 * (true_temp - s.base_temp) + rng.normal(0, 0.8)
    return round(float(temp), 2), round(float(min(max(humidity, 5.0), 100.0)), 1)


def _label_id(seed: int, index: int, kind: str, origin: int, start: int) -> str:
    raw = f"{seed}|{sensor_id(index)}|{kind}|{origin}|{start}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def _labels_table(rows: list[_Label]) -> pa.Table:
    """The labels as a table, each ``label_id`` once (an episode spanning days is drawn by each)."""
    first: dict[str, _Label] = {}
    for r in rows:
        first.setdefault(r.label_id, r)
    rows = list(first.values())
    if not rows:
        return FAULT_LABELS.empty_table()
    arrays = [
        pa.array(col, pa.int64()).cast(f.type) if f.name in ("start_ts", "end_ts") else pa.array(col, f.type)
        for f, col in zip(FAULT_LABELS, zip(*rows))
    ]
    return pa.Table.from_arrays(arrays, schema=FAULT_LABELS)
