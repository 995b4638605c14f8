"""The bulk intake (vectorised, COPY) writes what the single intake writes for the same rows."""

from __future__ import annotations

import csv
import io
import random

from sqlalchemy import Connection, text

from grids.access import Principal
from grids.locate import load_snapshot
from layers.incidents import intake

COLUMNS = ("category_id", "description", "address", "ST_AsEWKB(geom) AS geom", "crs_in",
           "reporter_name", "reporter_phone", "region_code", "grid_code", "community_code",
           "street_code", "boundary_version_id", "responsible_code", "fallback",
           "department_id", "received_at", "state_since", "due_at", "state")


def _rows(conn: Connection) -> list[dict[str, str]]:
    """Points inside demo grids in three CRSs, rows without a point, odd text, odd times."""
    points = conn.execute(text(
        "SELECT ST_X(d.geom), ST_Y(d.geom) FROM (SELECT geom FROM region_current "
        "WHERE level = 'grid' ORDER BY code LIMIT 40) r "
        "CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(r.geom, 3, 7)) d")).all()
    rng = random.Random(5)
    cats = ["E0101", "E0501", "E0502", "S0101", "C0102", "X0102"]
    out = []
    for n, (lon, lat) in enumerate(points):
        row = {"external_id": f"eq-{n}", "category": cats[n % len(cats)],
               "description": f"第{n}号\t反映\\问题\n第二行" if n % 7 == 0 else f"问题{n}",
               "address": "" if n % 3 else f"某路{n}号", "lon": repr(lon), "lat": repr(lat),
               "crs": "", "reporter_name": "" if n % 2 else "张三",
               "reporter_phone": "" if n % 4 else "13800000000",
               "received_at": f"2026-11-{1 + n % 27:02d}T{rng.randrange(24):02d}:"
                              f"{rng.randrange(60):02d}:{rng.randrange(60):02d}."
                              f"{rng.randrange(10 ** 9):09d}+0{n % 9}:00"}
        if n % 11 == 0:
            row |= {"lon": "", "lat": ""}
        elif n % 11 == 1:  # the same place in Web Mercator
            row |= {"crs": "EPSG:3857", "lon": repr(lon * 111319.49079327357),
                    "lat": repr(float(conn.execute(text(
                        "SELECT ST_Y(ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4326), "
                        "3857))"), {"x": lon, "y": lat}).scalar()))}
        out.append(row)
    return out


def _csv(rows: list[dict[str, str]], source: str) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["source", *rows[0]])
    w.writeheader()
    for r in rows:
        w.writerow({"source": source, **r})
    return buf.getvalue().encode()


def _written(conn: Connection, source: str) -> dict[str, tuple]:
    # crs_in of a row without a point: the single intake names the default CRS, the bulk
    # intake leaves it empty (as it always has); nothing reads it without a point
    cols = ", ".join(COLUMNS).replace("crs_in", "CASE WHEN geom IS NOT NULL THEN crs_in END")
    return {r[0]: tuple(r[1:]) for r in conn.execute(text(
        f"SELECT external_id, {cols} FROM incident WHERE source = :s"), {"s": source})}


def test_bulk_writes_what_single_intake_writes(conn: Connection) -> None:
    snap = load_snapshot(conn)
    system = Principal.system("test")
    rows = _rows(conn)
    # the first third already taken in: duplicates, not written twice
    first = intake.bulk(conn, snap, intake.read_bulk(_csv(rows[:40], "hotline_12345")),
                        principal=system)
    assert first["imported"] == 40
    result = intake.bulk(conn, snap, intake.read_bulk(_csv(rows, "hotline_12345")),
                         principal=system)
    assert result | {"errors": []} == {"rows": len(rows), "imported": len(rows) - 40,
                                       "duplicates": 40, "bad_rows": 0, "errors": []}
    frame = intake.read_bulk(_csv(rows, "police_110"))
    for rec in frame.to_dict("records"):
        data = {k: (v or None) for k, v in rec.items()}
        data["lon"] = float(rec["lon"]) if rec["lon"] else None
        data["lat"] = float(rec["lat"]) if rec["lat"] else None
        data["received_at"] = intake.pd.Timestamp(rec["received_at"]).to_pydatetime(warn=False)
        intake.create(conn, snap, data, principal=system)
    bulk, single = _written(conn, "hotline_12345"), _written(conn, "police_110")
    assert len(bulk) == len(rows) > 100
    assert bulk == single
    events = conn.execute(text(
        "SELECT count(*) FROM incident_event e JOIN incident i ON i.id = e.incident_id "
        "WHERE i.source = 'hotline_12345' AND e.action = 'receive' AND e.to_state = 'received' "
        "AND e.at = i.received_at")).scalar()
    assert events == len(rows)
