"""Heat bins and vector tiles on the demo city's 220,000 incidents, beside their baselines.

Read-only on database ``citygrid`` (every statement runs in a READ ONLY transaction). Figures:
city-wide heat at a city zoom (square bins and hexagons), tiles of each layer at z10/z12/z14 over
the city centre (uncached), the raw ``count(*)`` of the same filter, and what shipping every
point to a ``folium.plugins.HeatMap`` page would weigh (Ushahidi's lesson). Prints JSON.

    .venv/bin/python -m bench.heat_tiles [--url postgresql+psycopg://citygrid@127.0.0.1:54329/citygrid]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import create_engine, text

from bench.common import percentile
from bench.common import timed as common_timed
from grids.access import Principal
from layers import maps

DEFAULT_URL = "postgresql+psycopg://citygrid@127.0.0.1:54329/citygrid"


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """Median milliseconds of ``repeat`` runs after one warm-up, and the last result
    (:func:`bench.common.timed` and :func:`bench.common.percentile`)."""
    runs, out = common_timed(fn, repeat, warm=True)
    return round(percentile(runs, 50), 1), out


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    return (int((lon + 180) / 360 * n),
            int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--zoom", type=float, default=11, help="city zoom for the heat figure")
    args = ap.parse_args()
    engine = create_engine(args.url)
    admin = Principal.system("bench")
    result: dict[str, Any] = {"database": args.url.rsplit("/", 1)[-1]}
    with engine.connect() as conn:
        conn.execute(text("SET default_transaction_read_only = on"))
        conn.commit()
        n = conn.execute(text("SELECT count(*) FROM incident")).scalar()
        x0, y0, x1, y1 = conn.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom)"
            " AS e FROM region_current WHERE level = 'grid') s")).one()
        bbox = (x0, y0, x1, y1)
        result["incidents"] = n
        ms, _ = timed(lambda: conn.execute(text(
            "SELECT count(*) FROM incident i WHERE i.geom IS NOT NULL AND "
            "i.geom && ST_MakeEnvelope(:a, :b, :c, :d, 4490)"),
            {"a": x0, "b": y0, "c": x1, "d": y1}).scalar())
        result["baseline_raw_count_ms"] = ms
        for shape in ("square", "hex"):
            ms, out = timed(lambda s=shape: maps.heat(conn, principal=admin, zoom=args.zoom,
                                                      bbox=bbox, shape=s), repeat=3)
            result[f"heat_{shape}_z{args.zoom:g}"] = {
                "ms": ms, "bins": len(out["features"]), "total": out["total"],
                "geojson_bytes": len(orjson.dumps(out)), "cell_m": out["cell_m"]}
        lon, lat = conn.execute(text(
            "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Collect(geom)) AS c "
            "FROM incident WHERE received_at > now() - interval '400 days') s")).one()
        tiles: dict[str, Any] = {}
        for z in (10, 12, 14):
            x, y = tile_of(lon, lat, z)
            for layer in maps.LAYERS:
                ms, data = timed(lambda la=layer, zz=z, xx=x, yy=y: maps.tile(
                    conn, la, zz, xx, yy, principal=admin, cache=None), repeat=3)
                tiles[f"{layer}_z{z}"] = {"ms": ms, "bytes": len(data)}
        cache = maps.TileCache()
        x, y = tile_of(lon, lat, 12)
        maps.tile(conn, "grids", 12, x, y, principal=admin, cache=cache)
        ms, _ = timed(lambda: maps.tile(conn, "grids", 12, x, y, principal=admin, cache=cache))
        tiles["grids_z12_cached"] = {"ms": ms, "note": "one data-version read + LRU hit"}
        result["tiles"] = tiles
        # The anchor: every point in a folium HeatMap page.
        import folium
        from folium.plugins import HeatMap

        t0 = time.perf_counter()
        pts = conn.execute(text(
            "SELECT ST_Y(geom), ST_X(geom) FROM incident WHERE geom IS NOT NULL")).all()
        fmap = folium.Map(location=[lat, lon], zoom_start=12, tiles=None)
        HeatMap([[round(a, 6), round(b, 6)] for a, b in pts]).add_to(fmap)
        page = fmap.get_root().render()
        result["baseline_folium_heatmap_all_points"] = {
            "ms": round((time.perf_counter() - t0) * 1000, 1), "points": len(pts),
            "page_bytes": len(page.encode())}
    engine.dispose()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
