"""Where each sensor stands right now, for the dashboard's fleet overview: a pure, vectorized classification.

States, worst first:

* ``stale``: the data as a whole is old (the newest reading of the fleet is more than
  ``stale_after_s`` behind the wall clock): the pipeline or the capture is not
  delivering, so nothing can be said about the present;
* ``silent``: the sensor has not reported for ``silent_after_s`` while the fleet has
  (measured against the fleet's newest reading, i.e. in data time);
* ``critical`` / ``warning``: the worst severity of its open anomaly episodes (an
  episode is open while it was extended within ``open_within_s`` of the fleet's newest
  reading; the alarms' ``clear_after_s``);
* ``ok``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STATES: tuple[str, ...] = ("stale", "silent", "critical", "warning", "ok")
US = 1_000_000


@dataclasses.dataclass(frozen=True)
class StateParams:
    silent_after_s: int = 120
    stale_after_s: int = 300
    open_within_s: int = 300

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{f.name}={v!r} is invalid; expected an integer > 0")


def open_anomalies(episodes: pa.Table, newest_us: int, params: StateParams = StateParams()) -> pa.Table:
    """Per sensor: ``n_open`` episodes still open and the ``worst`` severity among them."""
    if episodes.num_rows == 0:
        return pa.table({"sensor_id": pa.array([], pa.string()), "n_open": pa.array([], pa.int64()), "worst": pa.array([], pa.int64())})
    live = episodes.filter(pc.greater_equal(pc.cast(episodes["end_ts"], pa.int64()), newest_us - params.open_within_s * US))
    crit = pc.cast(pc.equal(live["severity"], "critical"), pa.int64())
    t = pa.table({"sensor_id": live["sensor_id"], "crit": crit})
    g = t.group_by("sensor_id").aggregate([("crit", "count"), ("crit", "max")])
    return pa.table({"sensor_id": g["sensor_id"], "n_open": g["crit_count"], "worst": g["crit_max"]})


def classify(last: pa.Table, episodes: pa.Table, now_us: int, params: StateParams = StateParams()) -> pa.Table:
    """``last``: one row per sensor with ``sensor_id`` and ``last_ts`` (microseconds); returns
    ``last`` plus ``age_s`` (wall clock), ``n_open`` and ``state``, sorted by sensor."""
    if last.num_rows == 0:
        return last.append_column("age_s", pa.array([], pa.float64())).append_column(
            "n_open", pa.array([], pa.int64())).append_column("state", pa.array([], pa.string()))  # fmt: skip
    last = last.sort_by("sensor_id")
    ts = pc.cast(last["last_ts"], pa.int64()).to_numpy()
    newest = int(ts.max())
    anomalies = open_anomalies(episodes, newest, params)
    idx = {s: i for i, s in enumerate(anomalies["sensor_id"].to_pylist())}
    pos = np.array([idx.get(s, -1) for s in last["sensor_id"].to_pylist()], dtype=np.int64)
    n_all = np.append(anomalies["n_open"].to_numpy(), 0)
    worst_all = np.append(anomalies["worst"].to_numpy(), -1)
    n_open = n_all[pos]  # -1 picks the appended 0 / -1: no open episode
    worst = worst_all[pos]
    state = np.where(worst == 1, "critical", np.where(worst == 0, "warning", "ok")).astype(object)
    state[newest - ts >= params.silent_after_s * US] = "silent"
    if now_us - newest > params.stale_after_s * US:
        state[:] = "stale"
    return (
        last.append_column("age_s", pa.array((now_us - ts) / US, pa.float64()))
        .append_column("n_open", pa.array(n_open, pa.int64()))
        .append_column("state", pa.array(state, pa.string()))
    )
