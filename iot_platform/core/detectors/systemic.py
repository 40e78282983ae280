"""Systemic anomalies: when more than half of a group of co-located sensors alerts at once, the cause is shared.

Groups come from the sensor registry (``SensorSpec.group``: the sensors
behind one gateway, on one machine, in one plant); a sensor of no group (an
imported series, by default) is never part of a systemic alert, because
unrelated series alerting together mean nothing. A systemic point has
``sensor_id = FLEET_ID`` and its group in ``metric``; its step (for merging
consecutive ticks into one episode) is the longest step of the alerts it
counts, so an hourly group's systemic ticks merge like a 1 Hz group's.

A gateway clock that jumped, a network burst delivering a backlog, a stale
baseline: every sensor alerts at the same time although no sensor is broken
(the seed's debugging scenario). At each tick ``W`` (a multiple of
``WindowParams.hop_s``), the sensors alerting in it (points of
``SystemicParams.types`` whose ``tick_ts`` is ``W``: readings of
``[W - hop, W)``, windows ending at ``W``, silence at ``W``) are counted
against the fleet (the known sensors at ``W``); above ``min_fraction`` of a
fleet of at least ``min_fleet`` sensors, one critical ``systemic`` point with
``sensor_id = FLEET_ID`` is raised. Linking (or suppressing) the individual
alerts is done when points become episodes
(:func:`~iot_platform.core.detectors.episodes.to_episodes`).

The fleet size is additive over sensors (see ``silence.known_counts``), so a
fleet processed a chunk of sensors at a time sums the chunks' counts.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.detectors.params import SystemicParams
from iot_platform.core.detectors.points import POINTS, concat_points, make_points
from iot_platform.core.detectors.silence import FLEET
from iot_platform.core.schemas import FLEET_ID
from iot_platform.core.windows import WindowParams, emit_range


def fleet_table(tick: np.ndarray, count: np.ndarray, group: np.ndarray | None = None) -> pa.Table:
    """(tick_ts, n_sensors, group) rows; ``group`` defaults to ``fleet``."""
    g = np.full(len(tick), "fleet", dtype=object) if group is None else np.asarray(group, dtype=object)
    return pa.Table.from_arrays([pa.array(tick, pa.int64()).cast(FLEET.field("tick_ts").type), pa.array(count, pa.int64()),
                                 pa.array(g, pa.string())], schema=FLEET)  # fmt: skip


def detect(
    points: pa.Table,
    fleet: pa.Table,
    params: SystemicParams = SystemicParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int,
    emit_end: dt.datetime | int,
    registry=None,
) -> pa.Table:
    """Systemic POINTS at ticks in ``(emit_start, emit_end]``.

    ``points``: every sensor's points whose ``tick_ts`` is in that range (for
    per-reading points this means readings from ``emit_start - hop_s``);
    ``fleet``: (tick_ts, n_sensors, group), the size of each group at each tick;
    ``registry``: the sensors' groups (default: every sensor in group ``fleet``).
    """
    a, b = emit_range(emit_start, emit_end)
    if points.num_rows == 0 or fleet.num_rows == 0:
        return POINTS.empty_table()
    tick = pc.cast(points.column("tick_ts"), pa.int64()).to_numpy()
    types = points.column("anomaly_type").to_numpy(zero_copy_only=False)
    sensors = points.column("sensor_id").to_numpy(zero_copy_only=False)
    m = np.isin(types, list(params.types)) & (sensors != FLEET_ID) & (tick > a) & (tick <= b)
    if not m.any():
        return POINTS.empty_table()
    tick, types, sensors = tick[m], types[m], sensors[m]
    steps = np.asarray(points.column("step_s").to_numpy(zero_copy_only=False), dtype=np.float64)[m]
    groups = sensor_groups(sensors, registry)
    f_tick = pc.cast(fleet.column("tick_ts"), pa.int64()).to_numpy()
    f_n = np.asarray(pc.fill_null(fleet.column("n_sensors"), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    f_group = (np.asarray(pc.fill_null(fleet.column("group"), "").to_numpy(zero_copy_only=False), dtype=object)
               if "group" in fleet.column_names else np.full(len(f_tick), "fleet", dtype=object))  # fmt: skip
    parts = []
    for g in sorted({x for x in groups.tolist() if x is not None}):
        in_g, f_in = groups == g, f_group == g
        parts.append(_detect_group(g, tick[in_g], types[in_g], sensors[in_g], steps[in_g], *_sum_by(f_tick[f_in], f_n[f_in]),
                                   params, windows))  # fmt: skip
    return concat_points(parts)


def sensor_groups(sensors: np.ndarray, registry) -> np.ndarray:
    """The registry group of each sensor id (None: no group); every sensor in ``fleet`` without a registry."""
    if registry is None:
        return np.full(len(sensors), "fleet", dtype=object)
    uniq, inv = np.unique(sensors.astype(str), return_inverse=True) if len(sensors) else (np.zeros(0, object), np.zeros(0, np.int64))
    g = np.array([registry.spec(str(u)).group for u in uniq], dtype=object)
    return g[inv] if len(sensors) else np.zeros(0, dtype=object)


def _detect_group(group, tick, types, sensors, steps, f_tick, f_n, params: SystemicParams, windows: WindowParams) -> pa.Table:
    if len(tick) == 0 or len(f_tick) == 0:
        return POINTS.empty_table()

    # distinct (tick, sensor) pairs, then sensors per tick
    pair_order = np.lexsort((types, sensors, tick))
    t_s, s_s, ty_s = tick[pair_order], sensors[pair_order], types[pair_order]
    new_pair = np.r_[True, (t_s[1:] != t_s[:-1]) | (s_s[1:] != s_s[:-1])]
    u_tick, n_alert = np.unique(t_s[new_pair], return_counts=True)
    pos = np.minimum(np.searchsorted(f_tick, u_tick), len(f_tick) - 1)
    n_fleet = np.where(f_tick[pos] == u_tick, f_n[pos], 0)
    raise_it = (n_fleet >= params.min_fleet) & (n_alert > params.min_fraction * n_fleet)
    if not raise_it.any():
        return POINTS.empty_table()
    rows = np.flatnonzero(raise_it)
    # sensors per type in each raised tick (a sensor can count under several types)
    triple = np.r_[True, (t_s[1:] != t_s[:-1]) | (s_s[1:] != s_s[:-1]) | (ty_s[1:] != ty_s[:-1])]
    messages = []
    for r in rows:
        in_tick = t_s == u_tick[r]
        kinds, counts = np.unique(ty_s[in_tick & triple], return_counts=True)
        detail = ", ".join(f"{k} {c}" for k, c in zip(kinds, counts))
        messages.append(f"{n_alert[r]} of {n_fleet[r]} sensors of group {group} alerting at once ({detail}): "
                        "a shared cause")  # fmt: skip
    frac = n_alert[rows] / n_fleet[rows]
    # the step of a systemic tick: the longest step of the alerts it counts (an hourly sensor's windows)
    step_sorted = steps[pair_order]
    u_pos = np.searchsorted(t_s, u_tick[rows])
    u_end = np.searchsorted(t_s, u_tick[rows], side="right")
    step = np.array([max(float(windows.hop_s), float(step_sorted[i:j].max())) for i, j in zip(u_pos, u_end)])
    return make_points(
        np.array([FLEET_ID], dtype=object),
        np.zeros(len(rows), np.int64),
        anomaly_type="systemic",
        severity="critical",
        metric=group,
        ts=u_tick[rows],
        tick_ts=u_tick[rows],
        step_s=step,
        value=frac,
        threshold=params.min_fraction,
        score=frac,
        message=pa.array(messages, pa.string()),
    )


def _sum_by(key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, inv = np.unique(key, return_inverse=True)
    return u, np.bincount(inv, weights=value, minlength=len(u)).astype(np.int64)
