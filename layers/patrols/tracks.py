"""Patrol tracks: a worker's raw fixes → shifts → filtered polylines.

The rule, applied to one worker's fixes in time order (duplicates cannot exist: one fix per
worker and instant), all distances in metres in the city's metric CRS (``grids.city``: a CGCS2000 Gauss–Krüger
zone):

1. **Shifts.** A gap of more than 30 minutes between consecutive fixes (any fix: a phone that
   reports is on duty) starts a new shift. Each shift is its own track.
2. **Accuracy.** A fix whose reported accuracy is worse than 100 m is dropped (``accuracy``).
   A fix without an accuracy is trusted.
3. **Speed.** A fix that implies more than 30 m/s from the previous *accepted* fix of the shift
   is a gross outlier and dropped (``speed``). If three consecutive dropped fixes agree with each
   other (≤ 30 m/s between them), the worker really is there: they are accepted, and if the fix
   they disagree with was the first of the shift (nothing confirms it) it is dropped instead — so
   an outlier at the start of a shift cannot lock the track out.
4. **Jitter.** An accepted fix less than 5 m from the previous *kept* fix is collapsed into it
   (``jitter``): a worker standing still draws a point, not a scribble. Collapsed fixes are good
   positions: they still count for "where was the worker when" (last patrolled, alerts), only the
   line does not use them.

The line of a shift joins its kept fixes in time order; a shift with one kept fix is a point.
Everything here is plain numpy/shapely on arrays; the only Python loop is the sequential filter
of step 3–4 (each decision depends on the previous accepted fix), a few hundred nanoseconds a fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

KEPT, ACCURACY, JITTER, SPEED = 0, 1, 2, 3
REASONS = {ACCURACY: "accuracy", JITTER: "jitter", SPEED: "speed"}
MAX_GAP_S = 30 * 60
MAX_ACCURACY_M = 100.0
MIN_STEP_M = 5.0
MAX_SPEED_MPS = 30.0
CONFIRM = 3


@dataclass(frozen=True, slots=True)
class TrackRules:
    """The filter's thresholds (defaults: the documented rule)."""

    max_gap_s: float = MAX_GAP_S
    max_accuracy_m: float = MAX_ACCURACY_M
    min_step_m: float = MIN_STEP_M
    max_speed_mps: float = MAX_SPEED_MPS
    confirm: int = CONFIRM


RULES = TrackRules()


def shifts_of(t: np.ndarray, *, max_gap_s: float = MAX_GAP_S) -> np.ndarray:
    """Shift number of each fix of one worker (``t`` in seconds, ascending).

    >>> shifts_of(np.array([0.0, 30, 60, 2000, 2030])).tolist()
    [0, 0, 0, 1, 1]
    """
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate([[0], np.cumsum(np.diff(t) > max_gap_s)]).astype(np.int32)


def filter_fixes(t: np.ndarray, x: np.ndarray, y: np.ndarray, accuracy: np.ndarray | None = None,
                 *, rules: TrackRules = RULES) -> tuple[np.ndarray, np.ndarray]:
    """Status (``KEPT``, ``ACCURACY``, ``JITTER``, ``SPEED``) and shift of each fix.

    ``t`` seconds ascending, ``x``/``y`` metres (the city's metric CRS), ``accuracy`` metres (NaN: unknown).

    >>> t = np.array([0.0, 30, 60, 90, 120])
    >>> x = np.array([0.0, 40, 42, 5000, 80])
    >>> status, shift = filter_fixes(t, x, np.zeros(5))
    >>> status.tolist()  # 42 is 2 m from 40 (jitter), 5000 is 163 m/s away (speed)
    [0, 0, 2, 3, 0]
    """
    t = np.asarray(t, dtype=np.float64)
    n = t.size
    status = np.zeros(n, dtype=np.int8)
    shift = shifts_of(t, max_gap_s=rules.max_gap_s)
    if accuracy is not None:
        acc = np.asarray(accuracy, dtype=np.float64)
        status[acc > rules.max_accuracy_m] = ACCURACY  # NaN compares False: unknown is trusted
    ts, xs, ys, sh = t.tolist(), np.asarray(x, float).tolist(), np.asarray(y, float).tolist(), \
        shift.tolist()
    st = status.tolist()
    vmax, step = rules.max_speed_mps, rules.min_step_m
    last = -1  # the previous accepted fix (kept or collapsed into a kept one)
    kept = -1  # the previous kept fix (a vertex of the line)
    first = -1  # the first accepted fix of the shift
    pending: list[int] = []
    for i in range(n):
        if i and sh[i] != sh[i - 1]:
            last = kept = first = -1
            pending = []
        if st[i] == ACCURACY:
            continue
        if last < 0:
            last = kept = first = i
            continue
        if math.hypot(xs[i] - xs[last], ys[i] - ys[last]) > vmax * max(ts[i] - ts[last], 1.0):
            st[i] = SPEED
            if pending and math.hypot(xs[i] - xs[pending[-1]], ys[i] - ys[pending[-1]]) > \
                    vmax * max(ts[i] - ts[pending[-1]], 1.0):
                pending = []
            pending.append(i)
            if len(pending) < rules.confirm:
                continue
            # Confirmed: the worker is where the dropped fixes say.
            if last == first == kept:
                st[first] = SPEED
            for j in pending:
                st[j] = KEPT
            kept = pending[0]
            for j in pending[1:]:
                if math.hypot(xs[j] - xs[kept], ys[j] - ys[kept]) < step:
                    st[j] = JITTER
                else:
                    kept = j
            last, pending = pending[-1], []
            continue
        pending = []
        last = i
        if math.hypot(xs[i] - xs[kept], ys[i] - ys[kept]) < step:
            st[i] = JITTER
        else:
            kept = i
    return np.asarray(st, dtype=np.int8), shift


def good(status: np.ndarray) -> np.ndarray:
    """Fixes that are real positions (kept or collapsed as jitter)."""
    return (status == KEPT) | (status == JITTER)


def lines(groups: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One geometry per group of points (in the order given): a LineString, or a Point if alone.

    Returns the group keys (sorted, unique) and their geometries.

    >>> keys, geoms = lines(np.array([0, 0, 1]), np.array([0.0, 1, 5]), np.array([0.0, 0, 5]))
    >>> keys.tolist(), [g.geom_type for g in geoms]
    ([0, 1], ['LineString', 'Point'])
    """
    groups = np.asarray(groups)
    if groups.size == 0:
        return groups[:0], np.empty(0, dtype=object)
    keys, start, counts = np.unique(groups, return_index=True, return_counts=True)
    out = np.empty(keys.size, dtype=object)
    multi = counts >= 2
    in_multi = np.repeat(multi, counts)
    if multi.any():
        inv = np.repeat(np.arange(keys.size), counts)[in_multi]
        _, compact = np.unique(inv, return_inverse=True)
        out[multi] = shapely.linestrings(x[in_multi], y[in_multi], indices=compact)
    single = ~multi
    if single.any():
        out[single] = shapely.points(x[start[single]], y[start[single]])
    return keys, out
