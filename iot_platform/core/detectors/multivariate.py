"""Multivariate: readings whose metrics break the correlations the sensor usually shows (PCA, T^2 and Q).

A pump's pressure, flow, vibration and temperature move together; cavitation
or a closing valve changes how they move together before any one metric
leaves its own range. For each sensor and block of ``block_s`` seconds
(epoch-aligned, like panes), a PCA model is fitted on the sensor's previous
``fit_blocks`` blocks (its own recent history, so a new sensor is judged once
it has that much; a slice needs that much context):

* standardize each metric by the fit's mean and sd, floored at its
  resolution (its smallest step); a block whose fit has a metric that did
  not move (stuck, or constant) is not modelled;
* eigen-decompose the correlation matrix; keep the components explaining
  ``variance_kept`` of the variance (at least one, at most k - 1);
* per reading: Hotelling's ``T^2 = sum t_a^2 / lambda_a`` (unusual along the
  usual directions) and ``Q = |z - P P' z|^2`` (the squared prediction error,
  SPE: off the usual relation). Limits: the chi-square quantile of ``T^2``
  (Wilson-Hilferty) and Jackson-Mudholkar's for ``Q``, at the tail
  probability that gives ``false_alerts_per_day`` per sensor at its rate;
* ``score = Q / limit`` (``max(T^2 / limit, Q / limit)`` with
  ``t2_alerts``: with a fit of 15 minutes, T^2 flags every duty point the last
  15 minutes did not see, so by default it is reported, not alerted on): a
  point when above 1, critical
  above ``critical_ratio``. The metric named is the one contributing most
  (the largest ``e_j^2`` for Q, ``z_j * (P diag(1/lambda) t)_j`` for T^2).

Sensors the registry declares independent instruments (``multivariate:
false``, the simulator's) are skipped; of the others, only those whose fit
shows correlated metrics (some pair with ``|r| >=
min_corr``) are modelled: for independent metrics the univariate detectors
say everything. The pipeline drops multivariate points of readings that a
univariate detector already flagged (one alert per cause). NaN rows (a metric
missing) are neither fitted nor scored.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.params import MultivariateParams, gaussian_isf
from iot_platform.core.detectors.points import POINTS, concat_points, fmt, join, make_points, reading_tick
from iot_platform.core.windows import US, ReadingsFrame, ReadingsSource, WindowParams, to_us


def _chi2_quantile(dof: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Upper quantile of chi-square with ``dof`` degrees at standard-normal quantile ``z`` (Wilson-Hilferty)."""
    a = 2.0 / (9.0 * dof)
    return dof * np.maximum(1 - a + z * np.sqrt(a), 0) ** 3


def _q_limit(res_eig: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Jackson-Mudholkar limit of Q from the residual eigenvalues (rows), at normal quantile ``z``."""
    t1 = res_eig.sum(axis=1)
    t2 = (res_eig**2).sum(axis=1)
    t3 = (res_eig**3).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        h0 = 1 - 2 * t1 * t3 / (3 * t2**2)
        h0 = np.where(np.isfinite(h0) & (h0 > 0.05), h0, 0.05)
        inner = z * np.sqrt(2 * t2 * h0**2) / t1 + 1 + t2 * h0 * (h0 - 1) / t1**2
        return t1 * np.maximum(inner, 1e-12) ** (1 / h0)


def detect_frame(
    frame: ReadingsFrame,
    params: MultivariateParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
    resolved=None,
    explained: list | None = None,
) -> pa.Table:
    """Points for the readings of ``frame`` with ``start_us <= ts < end_us``; earlier readings are the fits.

    ``explained`` (a list), when given, receives ``(codes, ts, metrics)`` of the modelled readings whose Q is
    within its limit: their metrics moved together as usual (a pump changing its duty point), which the
    pipeline uses to drop univariate level shifts and spikes of those readings.
    """
    if frame.n_rows == 0:
        return POINTS.empty_table()
    metrics = [m for m in params.metrics if frame.valid(m).any()]
    if len(metrics) < 2:
        return POINTS.empty_table()
    # the metrics each sensor has (most of its readings valid), and the sensors with at least two
    ok = {m: frame.valid(m) for m in metrics}
    counts = {m: np.add.reduceat(ok[m], frame.offsets[:-1], dtype=np.int64) if frame.n_rows else None for m in metrics}
    n_rows = np.diff(frame.offsets)
    has = np.stack([(counts[m] * 2 > n_rows) & (n_rows > 0) for m in metrics], axis=1)
    if resolved is not None:
        has &= np.stack([resolved.has[m] for m in metrics], axis=1) & resolved.multivariate[:, None]
    parts = []
    for pattern in np.unique(has[has.sum(axis=1) >= 2], axis=0):
        sensors = np.flatnonzero((has == pattern).all(axis=1))
        ms = [m for m, use in zip(metrics, pattern) if use]
        parts.append(_points_of(frame, params, windows, start_us, end_us, sensors, ms, resolved, explained))
    return concat_points(parts)


def _points_of(frame, params, windows, start_us, end_us, sensors, ms, resolved, explained) -> pa.Table:
    in_set = np.zeros(len(frame.names), dtype=bool)
    in_set[sensors] = True
    rows = np.flatnonzero(in_set[frame.code] & np.logical_and.reduce([frame.valid(m) for m in ms]))
    if len(rows) == 0:
        return POINTS.empty_table()
    k = len(ms)
    X = np.stack([frame.values[m][rows] for m in ms], axis=1)
    code, ts = frame.code[rows], frame.ts[rows]
    block_us = params.block_s * US
    blk = ts // block_us
    key = code * (2**32) + blk
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    bkey = key[start]
    bn = np.diff(np.r_[start, len(rows)])
    s1 = np.stack([np.add.reduceat(X[:, i], start) for i in range(k)], axis=1)
    s2 = np.zeros((len(start), k, k))
    for i in range(k):  # the upper triangle of the sums of products, one pass each (no n x k x k temporary)
        for j in range(i, k):
            s2[:, i, j] = s2[:, j, i] = np.add.reduceat(X[:, i] * X[:, j], start)
    d = np.abs(np.diff(X, axis=0))
    step = np.minimum.reduceat(np.vstack([np.full((1, k), np.inf), np.where(d > 0, d, np.inf)]), start, axis=0)

    # the fit of each block: the sums of its sensor's previous fit_blocks blocks
    nb = len(bkey)
    fn = np.zeros(nb)
    f1 = np.zeros((nb, k))
    f2 = np.zeros((nb, k, k))
    fstep = np.full((nb, k), np.inf)
    for j in range(1, params.fit_blocks + 1):
        pos = np.minimum(np.searchsorted(bkey, bkey - j), nb - 1)
        found = bkey[pos] == bkey - j
        fn += np.where(found, bn[pos], 0)
        f1 += np.where(found[:, None], s1[pos], 0.0)
        f2 += np.where(found[:, None, None], s2[pos], 0.0)
        fstep = np.minimum(fstep, np.where(found[:, None], step[pos], np.inf))
    fit = fn >= params.min_fit_readings
    if not fit.any():
        return POINTS.empty_table()
    b = np.flatnonzero(fit)
    n_fit = fn[b]
    mean = f1[b] / n_fit[:, None]
    cov = f2[b] / n_fit[:, None, None] - mean[:, :, None] * mean[:, None, :]
    var = np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0)
    # a metric that did not move during the fit (stuck, or constant) is no reference: no model
    # (its sd at least its resolution, the smallest step it made: a metric that moved by one step in the
    # fit is no reference for judging the next one either)
    moving = np.all(np.isfinite(fstep[b]) & (var > 0), axis=1)
    sd = np.maximum(np.sqrt(np.where(moving[:, None], var, 1.0)), np.where(np.isfinite(fstep[b]), fstep[b], 0.0))
    corr = cov / (sd[:, :, None] * sd[:, None, :])
    idx = np.arange(k)
    corr[:, idx, idx] = 1.0
    off = np.abs(corr.copy())
    off[:, idx, idx] = 0
    modelled = (off.max(axis=(1, 2)) >= params.min_corr) & moving
    if not modelled.any():
        return POINTS.empty_table()
    b, mean, sd, corr = b[modelled], mean[modelled], sd[modelled], corr[modelled]
    lam, vec = np.linalg.eigh(corr)  # ascending
    lam, vec = lam[:, ::-1], vec[:, :, ::-1]
    lam = np.maximum(lam, 1e-9)
    share = np.cumsum(lam, axis=1) / lam.sum(axis=1, keepdims=True)
    a = np.clip(np.sum(share < params.variance_kept, axis=1) + 1, 1, k - 1)  # components kept per block

    # readings of the modelled blocks
    blk_of_row = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1
    model_of_block = np.full(nb, -1)
    model_of_block[b] = np.arange(len(b))
    mi = model_of_block[blk_of_row]
    # every modelled reading (the pane sums below start before start_us); points only in [start_us, end_us)
    sel = np.flatnonzero(mi >= 0)
    if not ((ts[sel] >= start_us) & (ts[sel] < end_us)).any():
        return POINTS.empty_table()
    mi = mi[sel]
    z = (X[sel] - mean[mi]) / sd[mi]
    t = np.einsum("nk,nkc->nc", z, vec[mi])  # scores on every component
    keep = np.arange(k)[None, :] < a[mi][:, None]
    t_kept = np.where(keep, t, 0.0)
    t2 = np.sum(np.where(keep, t**2 / lam[mi], 0.0), axis=1)
    e = z - np.einsum("nc,nkc->nk", t_kept, vec[mi])
    q = np.sum(e**2, axis=1)
    per_day = np.maximum(86_400 * US / frame.interval_us[code[sel]], 1.0)
    sens = 1.0 if resolved is None else resolved.sensitivity[code[sel]]
    zq = gaussian_isf(np.minimum(params.false_alerts_per_day * sens / per_day, 0.5))
    t2_lim = _chi2_quantile(a[mi].astype(float), zq)
    res_eig = np.where(~keep, lam[mi], 0.0)
    q_lim = _q_limit(res_eig, zq)
    r_t2, r_q = t2 / t2_lim, q / q_lim
    score = np.maximum(r_t2, r_q) if params.t2_alerts else r_q
    if explained is not None:  # readings the model explains: their metrics moved together, as usual
        ok_rows = (r_q <= 1.0) & (ts[sel] >= start_us) & (ts[sel] < end_us)
        explained.append((code[sel][ok_rows], ts[sel][ok_rows], tuple(ms)))
    hit = np.flatnonzero((score > 1.0) & (ts[sel] >= start_us) & (ts[sel] < end_us))
    if len(hit) == 0:
        return POINTS.empty_table()
    # the metric contributing most to the larger of the two statistics
    w = np.einsum("nkc,nc->nk", vec[mi[hit]], np.where(keep[hit], t[hit] / lam[mi[hit]], 0.0))
    contrib = np.where((r_q[hit] >= r_t2[hit])[:, None], e[hit] ** 2, z[hit] * w)
    top = np.argmax(contrib, axis=1)
    r = sel[hit]
    c = code[r]
    names_of = np.array(ms, dtype=object)
    which = np.where(r_q[hit] >= r_t2[hit], "Q (off the usual relation)", "T2 (unusual along it)")
    out = []
    for j, m in enumerate(ms):
        i = np.flatnonzero(top == j)
        if len(i) == 0:
            continue
        out.append(
            make_points(
                frame.names,
                c[i],
                anomaly_type="multivariate",
                severity=np.where(score[hit][i] > params.critical_ratio, "critical", "warning").astype(object),
                metric=m,
                ts=ts[r][i],
                tick_ts=reading_tick(ts[r][i], windows.hop_us),
                step_s=frame.interval_us[c[i]] / US,
                value=X[r][i, j],
                threshold=mean[mi[hit]][i, j],
                score=score[hit][i],
                message=join(
                    pa.array(which[i], pa.string()), " at ", fmt(score[hit][i], 2), " x its limit; ", f"{m} ",
                    fmt(X[r][i, j], 4), " contributes most (usual ", fmt(mean[mi[hit]][i, j], 4), "; model of ",
                    ", ".join(names_of.tolist()), ")",
                ),
            )
        )
    return concat_points(out)


def detect(
    readings: pa.Table,
    params: MultivariateParams = MultivariateParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
    intervals: pa.Table | None = None,
    registry=None,
) -> pa.Table:
    """POINTS for readings with ts in ``[emit_start, emit_end)``; the ``fit_blocks`` blocks before are the fit."""
    a = to_us(emit_start, "emit_start")
    b = to_us(emit_end, "emit_end")
    source = ReadingsSource([readings])
    parts = []
    for lo, hi in source.chunks():
        frame = source.frame(lo, hi, windows, intervals, registry)
        res = registry.resolve(frame.names) if registry is not None else None
        parts.append(detect_frame(frame, params, windows, -(2**62) if a is None else a, 2**62 if b is None else b, res))
    return concat_points(parts)

