"""Episodes, not floods: consecutive alert points of one (sensor, type, metric) become one anomaly.

Points are merged when each follows the previous within
``EpisodeParams.max_gap_steps`` of its kind's step (the sensor's sample
interval for per-reading points, its hop for per-window points). An episode
row (schemas.ANOMALIES) has the first and last point's times as
``start_ts`` / ``end_ts`` (so ``start_ts`` is when the anomaly was first
seen), the point with the highest score as its ``value`` / ``threshold`` /
``score`` / ``message``, the worst severity and the number of points.

``anomaly_id`` hashes (sensor, type, metric, start_ts): stable across
reruns, unique within a partition.

Systemic points (``FLEET_ID``) become episodes first; the individual points
of the counted types whose tick is a systemic tick are then linked to that
episode (``systemic_id``) or dropped (``SystemicParams.mode``). An episode
carries the id of the first systemic episode any of its points belongs to.

This runs over a day's points (cheap: no readings involved), so the
micro-batch path can store each batch's points and rebuild the day's
episodes at any time with the same result as a full-day run.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.detectors.params import DetectionParams
from iot_platform.core.detectors.points import POINTS
from iot_platform.core.detectors.systemic import sensor_groups
from iot_platform.core.schemas import ANOMALIES, FLEET_ID, TS_TYPE, conform

US = 1_000_000


def anomaly_id(sensor_id: str, anomaly_type: str, metric: str | None, start_us: int) -> str:
    raw = f"{sensor_id}|{anomaly_type}|{metric or ''}|{start_us}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def _columns(points: pa.Table) -> dict[str, np.ndarray]:
    out = {}
    for f in POINTS:
        col = points.column(f.name)
        if f.name in ("ts", "tick_ts"):
            out[f.name] = pc.cast(col, pa.int64()).to_numpy()
        elif pa.types.is_floating(f.type):
            out[f.name] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        else:
            out[f.name] = np.asarray(pc.fill_null(col, "").to_numpy(zero_copy_only=False), dtype=object)
    return out


def _merge(c: dict[str, np.ndarray], max_gap_steps: float) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Episodes of the points ``c`` (any order); also each point's episode index in sorted order, and the order."""
    order = np.lexsort((c["ts"], c["metric"], c["anomaly_type"], c["sensor_id"]))
    s = {k: v[order] for k, v in c.items()}
    n = len(order)
    same = np.zeros(n, dtype=bool)
    if n > 1:
        same[1:] = (
            (s["sensor_id"][1:] == s["sensor_id"][:-1])
            & (s["anomaly_type"][1:] == s["anomaly_type"][:-1])
            & (s["metric"][1:] == s["metric"][:-1])
            & (s["ts"][1:] - s["ts"][:-1] <= max_gap_steps * np.maximum(s["step_s"][1:], s["step_s"][:-1]) * US)
        )
    start = np.flatnonzero(~same)
    episode = np.cumsum(~same) - 1
    last = np.r_[start[1:], n] - 1
    # peak: highest score, earliest on ties
    score = np.where(np.isnan(s["score"]), -np.inf, s["score"])
    peak_order = np.lexsort((np.arange(n), -score, episode))
    peak = peak_order[start]  # first of each episode in (episode, -score, position) order
    critical = np.maximum.reduceat((s["severity"] == "critical").astype(np.int8), start).astype(bool)
    count = np.diff(np.r_[start, n])
    ids = [
        anomaly_id(sid, typ, met or None, int(t))
        for sid, typ, met, t in zip(s["sensor_id"][start], s["anomaly_type"][start], s["metric"][start], s["ts"][start])
    ]
    msg = [
        m if k == 1 else f"{m} [{k} points over {(e - b) / US:g} s]"
        for m, k, b, e in zip(s["message"][peak], count, s["ts"][start], s["ts"][last])
    ]
    metric = s["metric"][start]
    table = pa.table(
        {
            "anomaly_id": pa.array(ids, pa.string()),
            "sensor_id": pa.array(s["sensor_id"][start], pa.string()),
            "anomaly_type": pa.array(s["anomaly_type"][start], pa.string()),
            "severity": pa.array(np.where(critical, "critical", "warning"), pa.string()),
            "metric": pa.array([m or None for m in metric], pa.string()),
            "start_ts": pa.array(s["ts"][start], pa.int64()).cast(TS_TYPE),
            "end_ts": pa.array(s["ts"][last], pa.int64()).cast(TS_TYPE),
            "value": pa.array(s["value"][peak], pa.float64(), from_pandas=True),
            "threshold": pa.array(s["threshold"][peak], pa.float64(), from_pandas=True),
            "score": pa.array(s["score"][peak], pa.float64(), from_pandas=True),
            "n_points": pa.array(count, pa.int64()),
            "systemic_id": pa.nulls(len(start), pa.string()),
            "message": pa.array([m or None for m in msg], pa.string()),
        }
    )
    return conform(table, ANOMALIES), episode, order


def to_episodes(points: pa.Table, params: DetectionParams = DetectionParams()) -> pa.Table:
    """ANOMALIES from POINTS (any order), sorted by (start_ts, sensor_id, anomaly_type, metric).

    >>> import pyarrow as pa
    >>> from iot_platform.core.detectors.points import POINTS
    >>> pts = pa.Table.from_pylist([
    ...     dict(sensor_id="s1", anomaly_type="spike", severity=sev, metric="temperature", ts=t, tick_ts=60_000_000,
    ...          step_s=1.0, value=v, threshold=22.0, score=z, message=f"z={z}")
    ...     for t, v, z, sev in [(1_000_000, 40.0, 9.0, "critical"), (2_000_000, 30.0, 4.0, "warning")]],
    ...     schema=POINTS)
    >>> ep = to_episodes(pts)
    >>> ep.select(["severity", "value", "score", "n_points"]).to_pylist()
    [{'severity': 'critical', 'value': 40.0, 'score': 9.0, 'n_points': 2}]
    """
    if points.num_rows == 0:
        return ANOMALIES.empty_table()
    points = conform(points, POINTS)
    c = _columns(points)
    gap = params.episodes.max_gap_steps
    is_sys = (c["anomaly_type"] == "systemic") & (c["sensor_id"] == FLEET_ID)
    sys_ep = ANOMALIES.empty_table()
    linked_id = np.full(len(is_sys), None, dtype=object)
    if is_sys.any():
        sc = {k: v[is_sys] for k, v in c.items()}
        sys_ep, sys_episode, sys_order = _merge(sc, gap)
        sys_ep_of_tick = sys_episode[np.argsort(sys_order)]  # episode index of each systemic point
        # a systemic point's metric is its group; its members are that group's alerts in its tick
        tick_to_ep = dict(zip(zip(sc["metric"].tolist(), sc["tick_ts"].tolist()), sys_ep_of_tick.tolist()))
        group = sensor_groups(c["sensor_id"], params.registry)
        counted = ~is_sys & np.isin(c["anomaly_type"], list(params.systemic.types))
        eps = [tick_to_ep.get((g, t)) if k else None
               for g, t, k in zip(group.tolist(), c["tick_ts"].tolist(), counted.tolist())]  # fmt: skip
        member = np.array([e is not None for e in eps], dtype=bool)
        ids = sys_ep.column("anomaly_id").to_numpy(zero_copy_only=False)
        linked_id[member] = [ids[e] for e in eps if e is not None]
        keep = ~is_sys & ~(member if params.systemic.mode == "suppress" else np.zeros_like(member))
    else:
        keep = ~is_sys
    parts = [sys_ep]
    if keep.any():
        ic = {k: v[keep] for k, v in c.items()}
        ep, episode, order = _merge(ic, gap)
        lid = linked_id[keep][order]
        has = np.flatnonzero(lid != None)  # noqa: E711 (object array)
        if len(has):
            first = {}
            for e, i in zip(episode[has].tolist(), has.tolist()):
                first.setdefault(e, lid[i])  # points are in time order within an episode
            sid = [first.get(e) for e in range(ep.num_rows)]
            ep = ep.set_column(ep.schema.get_field_index("systemic_id"), ANOMALIES.field("systemic_id"),
                               pa.array(sid, pa.string()))  # fmt: skip
        parts.append(ep)
    out = pa.concat_tables(parts)
    idx = pc.sort_indices(
        out,
        sort_keys=[("start_ts", "ascending"), ("sensor_id", "ascending"), ("anomaly_type", "ascending"),
                   ("metric", "ascending", "at_start")],  # fmt: skip
    )
    return out.take(idx)
