"""Recurring places (反复发生): the same place with at least ``min_cases`` cases within ``days``
days, found with PostGIS's ``ST_ClusterDBSCAN`` in the metric CRS.

Rule: the cases received in the ``days`` days before the end of the month (default 90 days,
a case needs a point), per category by default (the same problem at the same place; pass
``by_category=False`` for any problem); DBSCAN with ``eps`` metres (default 50) and ``minpoints``
= ``min_cases`` (default 3): a case with at least ``min_cases − 1`` others within ``eps`` is a
core case, cases within ``eps`` of a core case join its cluster. A cluster is a recurring place;
places are ranked by their number of cases (then the latest case). :func:`dbscan_oracle` is the
same rule by brute force, for the tests.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, TypedDict

from sqlalchemy import Connection, text

from grids.access import Permission, Principal, prefix_of
from grids.city import profile
from layers import assessment

# "from" is a keyword, hence the functional form.
Recurring = TypedDict("Recurring", {
    "month": str, "from": str, "to": str, "days": int, "eps_m": float, "min_cases": int,
    "by_category": bool,
    "places": list[dict[str, Any]],  # rank, cases, ids, category, grid, centre, cases_detail
    "total": int, "rule": str})
"""What :func:`recurring` returns (``GET /analysis/recurring``)."""


def recurring(conn: Connection, *, principal: Principal, month: str, region: str | None = None,
              days: int = 90, eps_m: float = 50.0, min_cases: int = 3, by_category: bool = True,
              limit: int = 50) -> Recurring:
    """The recurring places of the ``days`` days up to the end of ``month`` (see module doc)."""
    city = profile(conn)
    tz = city.tz
    srid = city.metric_srid
    principal.require(Permission.ASSESSMENT_READ)
    _, end = assessment.month_window(month, tz)
    start = end - timedelta(days=days)
    scope = principal.locate_scope()
    params: dict[str, Any] = {"s": start, "e": end, "eps": eps_m, "k": min_cases,
                              "srid": srid, "patterns": scope.like_patterns(),
                              "p": (prefix_of(region) if region else "") + "%", "limit": limit}
    part = "PARTITION BY p.category_id" if by_category else ""
    cat = "i.category_id" if by_category else "CAST(NULL AS integer)"
    rows = conn.execute(text(
        f"WITH p AS (SELECT i.id, {cat} AS category_id, i.received_at, i.geom, i.grid_code, "
        "i.street_code, ST_Transform(i.geom, CAST(:srid AS integer)) AS g FROM incident i "
        "WHERE i.geom IS NOT NULL AND i.received_at >= :s AND i.received_at < :e "
        "AND i.state <> 'voided' AND i.region_code LIKE :p AND i.region_code LIKE ANY(:patterns)),"
        f" c AS (SELECT p.*, ST_ClusterDBSCAN(p.g, eps := :eps, minpoints := :k) OVER ({part}) "
        "AS cid FROM p), "
        "k AS (SELECT category_id, cid, count(*) AS n, array_agg(id ORDER BY received_at, id) "
        "AS ids, max(received_at) AS last_at, min(received_at) AS first_at, "
        "ST_Centroid(ST_Collect(geom)) AS centre, mode() WITHIN GROUP (ORDER BY grid_code) "
        "AS grid_code, mode() WITHIN GROUP (ORDER BY street_code) AS street_code "
        "FROM c WHERE cid IS NOT NULL GROUP BY category_id, cid HAVING count(*) >= :k) "
        "SELECT k.*, ST_X(centre) AS lon, ST_Y(centre) AS lat, cat.code AS category, "
        "cat.name AS category_name, gr.name AS grid_name, st.name AS street_name, "
        "count(*) OVER () AS n_places FROM k LEFT JOIN category cat ON cat.id = k.category_id "
        "LEFT JOIN region gr ON gr.code = k.grid_code LEFT JOIN region st ON st.code = "
        "k.street_code ORDER BY n DESC, last_at DESC, k.ids[1] LIMIT :limit"),
        params).mappings().all()
    places = [{"rank": i, "cases": int(r["n"]), "ids": list(r["ids"]),
               "category": r["category"], "category_name": r["category_name"],
               "grid_code": r["grid_code"], "grid_name": r["grid_name"],
               "street_name": r["street_name"], "lon": round(float(r["lon"]), 6),
               "lat": round(float(r["lat"]), 6),
               "first_at": r["first_at"].astimezone(tz).isoformat(),
               "last_at": r["last_at"].astimezone(tz).isoformat()}
              for i, r in enumerate(rows, start=1)]
    ids = [i for p in places for i in p["ids"]]
    detail = {r["id"]: r for r in conn.execute(text(
        "SELECT i.id, i.external_id, i.state, i.received_at, i.address, ST_X(i.geom) AS lon, "
        "ST_Y(i.geom) AS lat FROM incident i WHERE i.id = ANY(:ids)"), {"ids": ids}).mappings()}
    for p in places:
        p["cases_detail"] = [{"id": i, "external_id": detail[i]["external_id"],
                              "state": detail[i]["state"], "address": detail[i]["address"],
                              "received_at": detail[i]["received_at"].astimezone(tz).isoformat(),
                              "lon": round(float(detail[i]["lon"]), 6),
                              "lat": round(float(detail[i]["lat"]), 6)}
                             for i in p["ids"] if i in detail]
    return {"month": month, "from": start.isoformat(), "to": end.isoformat(), "days": days,
            "eps_m": eps_m, "min_cases": min_cases, "by_category": by_category,
            "places": places, "total": int(rows[0]["n_places"]) if rows else 0,
            "rule": f"≥ {min_cases} cases within {eps_m:g} m (DBSCAN, EPSG:{srid}) "
                    f"received in the {days} days before {end.date()}"
                    + (", same category" if by_category else "")}


def dbscan_oracle(points: list[tuple[int, float, float]], eps: float, min_pts: int
                  ) -> set[frozenset[int]]:
    """DBSCAN by brute force over (id, x, y): the clusters as sets of ids (noise left out).

    >>> sorted(map(sorted, dbscan_oracle([(1, 0, 0), (2, 10, 0), (3, 0, 10), (4, 500, 0)],
    ...                                  50, 3)))
    [[1, 2, 3]]
    """
    near = {p[0]: [q[0] for q in points if math.hypot(p[1] - q[1], p[2] - q[2]) <= eps]
            for p in points}
    core = {i for i, ns in near.items() if len(ns) >= min_pts}
    seen: set[int] = set()
    clusters: set[frozenset[int]] = set()
    for c in sorted(core):
        if c in seen:
            continue
        members, stack = set(), [c]
        while stack:
            i = stack.pop()
            if i in members:
                continue
            members.add(i)
            if i in core:
                stack.extend(j for j in near[i] if j not in members)
        seen |= members
        clusters.add(frozenset(members))
    return clusters
