"""docs/new-city.md, run: a new city from its own files, from an empty database to the first lookup.

Every step is the CLI an operator types (``citygrid db upgrade``, ``import regions`` per level,
``import roster``, ``check``, ``user add``), then the API is served (uvicorn, as ``citygrid serve``
does) and asked ``/locate`` with a token, and ``citygrid locate`` answers the same. The files come
from :mod:`tests.new_city`; :func:`walk_through` takes any :class:`~tests.new_city.NewCity`, so a
second demo city can run the same steps.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from app.cli import app as cli
from app.main import create_app
from app.settings import DatabaseSettings, Settings, get_settings
from tests.conftest import app_role_url, database_url, live_server
from tests.new_city import NewCity, write_new_city

PASSWORD = "new-city-admin-password"


def citygrid(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run one CLI command as an operator would; fail the test with its output if it fails."""
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(cli, list(args), env=env, input=stdin)
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, f"citygrid {' '.join(args)}:\n{res.output}"
    assert "Traceback" not in res.output
    return res.output


def walk_through(city: NewCity, database: str) -> dict:
    """The steps of docs/new-city.md on ``city``'s files into a fresh ``database``; returns
    the first /locate answer."""
    owner = database_url(database, fresh=True)
    env = {"CITYGRID_DATABASE_URL": app_role_url(owner), "CITYGRID_MIGRATION_URL": owner}
    f = city.files
    # 1. an empty database, migrated
    citygrid(env, "db", "upgrade")
    # 2. the regions, one level per file, top down (or one file with level and parent_code)
    citygrid(env, "import", "regions", str(f["city"]), "--level", "city")
    citygrid(env, "import", "regions", str(f["streets"]), "--layer", "streets")
    citygrid(env, "import", "regions", str(f["communities"]), "--level", "community",
             "--code-field", "bm", "--name-field", "mc")
    out = citygrid(env, "import", "regions", str(f["grids"]))
    assert "'regions': 8" in out
    # 3. nothing missing, nothing overlapping
    assert "0 violation(s)" in citygrid(env, "check")
    # 4. staff and their grids
    assert "'assignments':" in citygrid(env, "import", "roster", str(f["roster"]))
    # 5. the first account
    citygrid(env, "user", "add", "city_admin", "--role", "admin", "--region", city.code,
             "--password-stdin", stdin=PASSWORD + "\n")
    # 6. serve and look up
    settings = Settings(db=DatabaseSettings(database_url=env["CITYGRID_DATABASE_URL"],
                                            migration_url=owner))
    lon, lat = city.grid_point
    with live_server(create_app(settings)) as url:
        token = httpx.post(f"{url}/auth/token", json={"username": "city_admin",
                                                      "password": PASSWORD}).json()
        res = httpx.get(f"{url}/locate", params={"lon": lon, "lat": lat},
                        headers={"Authorization": f"Bearer {token['access_token']}"})
    assert res.status_code == 200, res.text
    answer = res.json()
    # 7. the CLI answers the same
    import orjson

    local = orjson.loads(citygrid(env, "locate", str(lon), str(lat)))
    assert local["grid"] == answer["grid"] and local["responsible"] == answer["responsible"]
    return answer


def test_a_new_city_from_its_own_files(tmp_path: Path) -> None:
    city = write_new_city(tmp_path / "files")
    answer = walk_through(city, "citygrid_test_newcity")
    assert answer["status"] == "inside" and answer["grid"]["code"] == city.grid_code
    assert [c["level"] for c in answer["chain"]] == ["grid", "community", "street", "city"]
    assert answer["chain"][-1]["name"] == city.name
    assert answer["responsible"]["code"] == city.primary
    assert answer["chain"][1]["name"] == "第1街道第1社区"  # GBK names, read as GBK
    engine = create_engine(database_url("citygrid_test_newcity"))
    with engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM region WHERE level = 'community' "
                                  "ORDER BY code")).scalars().all()
    engine.dispose()
    assert names == ["第1街道第1社区", "第1街道第2社区", "第2街道第1社区", "第2街道第2社区"]


def test_bad_files_fail_as_errors_never_tracebacks(tmp_path: Path) -> None:
    """What a new user tries first, through the CLI: a clear error and exit code 2."""
    import geopandas as gpd
    import numpy as np
    import shapely

    from gis.transform import transformer

    city = write_new_city(tmp_path / "files")
    owner = database_url("citygrid_test_newcity_bad", fresh=True)
    env = {"CITYGRID_DATABASE_URL": app_role_url(owner), "CITYGRID_MIGRATION_URL": owner}
    citygrid(env, "db", "upgrade")
    # Web Mercator metres in a GeoJSON that declares no CRS
    frame = gpd.read_file(city.files["city"])
    fwd = transformer("EPSG:4490", "EPSG:3857")
    frame["geometry"] = shapely.transform(
        frame.geometry.values, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    mercator = tmp_path / "mercator.geojson"
    frame.set_crs(None, allow_override=True).to_file(mercator)
    empty = tmp_path / "empty.geojson"
    empty.write_bytes(b"")
    for args, words in [
        (("import", "regions", str(mercator), "--level", "city"), "EPSG:3857"),
        (("import", "regions", str(empty), "--level", "city"), "empty"),
        (("import", "roster", str(city.files["roster"])), "no region"),  # no regions yet
        (("locate-file", str(tmp_path / "missing.csv"), str(tmp_path / "out.csv")),
         "no such file"),
    ]:
        get_settings.cache_clear()
        res = CliRunner().invoke(cli, list(args), env=env)
        get_settings.cache_clear()
        assert res.exit_code == 2, (args, res.output, res.exception)
        assert words in res.output and "Traceback" not in res.output, res.output
