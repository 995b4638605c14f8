import sys, math
from datetime import datetime
from sqlalchemy import create_engine, text
from bench import city
from grids.access import Principal, Scope
from layers import maps, map_tally
e=create_engine(city.url("citygrid_scale"))
m=maps.IncidentFilter(since=datetime.fromisoformat("2026-10-01T00:00:00+08:00"), until=datetime.fromisoformat("2026-11-01T00:00:00+08:00"))
which=sys.argv[1]
def tile_of(lon, lat, z):
    n=2**z; return int((lon+180)/360*n), int((1-math.asinh(math.tan(math.radians(lat)))/math.pi)/2*n)
z=int(sys.argv[2]); x,y=tile_of(120.075,29.306,z)
f = m if sys.argv[3]=="month" else maps.IncidentFilter()
scope=Scope.everything()
if which=="bins":
    size = maps.EARTH_M / 2 ** z * 16 / 256
    sql, params, src = maps._bins_sql(size, z, map_tally.tile_bin_box(z,x,y,16), f, scope)
elif which=="grids":
    counts, params = maps._grid_counts(f, scope, "grid_code", codes_sql="SELECT code FROM g" if z >= 13 else None)
    params |= {"z": z, "x": x, "y": y, "extent": 4096, "buffer": 64, "margin": 64/4096, "band": next(b for b in maps.ZOOM_BANDS if z <= b)}
    sql = maps._GRIDS_TILE.format(rscope="TRUE", counts=counts, name="NULL::text" if z < 12 else "r.name")
elif which=="heat":
    bbox=city.city_bbox("citygrid_scale")
    sql, params, src = maps._square_bins_sql(maps.cell_size_m(z), z, bbox, f, scope)
with e.connect() as c:
    for r in c.execute(text("EXPLAIN (ANALYZE, BUFFERS) "+sql), params): print(r[0])
