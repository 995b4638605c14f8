"""End to end: a tile served by the running app changes once the data under it changes.

The app is the real one (``create_app``, its lifespan, its locator listener and the process-wide
tile cache) on a scratch database with the tiny city. Incidents are committed by ``psql``,
another process, as an intake on another API worker would; the test waits for the NOTIFY to
reach the app (the tile cache's generation moves) and then asks for the same tiles again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from layers import maps
from tests.conftest import psql, tiny_city_engine, wait_for
from tests.tiny_city import G1, at


@pytest.fixture(scope="module")
def scratch() -> Iterator[Engine]:
    engine = tiny_city_engine("citygrid_test_tiles", users=(("tiles_sup", "supervisor"),),
                              catalogue=True)
    yield engine
    engine.dispose()


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    return (int((lon + 180) / 360 * n),
            int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def _insert(lon: float, lat: float, tag: str) -> str:
    return ("INSERT INTO incident (source, external_id, category_id, geom, state, region_code, "
            "grid_code, community_code, street_code, received_at, due_at) SELECT 'hotline_12345', "
            f"'{tag}', c.id, ST_SetSRID(ST_MakePoint({lon}, {lat}), 4490), 'handling', "
            f"'{G1}', '{G1}', '{G1[:12]}', '{G1[:9]}000', now(), now() + interval '1 day' "
            "FROM category c WHERE c.code = 'E0101'")


def test_a_tile_changes_after_another_connection_commits_under_it(scratch: Engine) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from tests.conftest import app_role_url, token_for

    owner = scratch.url.render_as_string(hide_password=False)
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(owner),
                                                  migration_url=owner)))
    lon, lat = at(0.4, 0.6)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert wait_for(lambda: not app.state.locator.stale, 5) is not None
        time.sleep(0.3)  # the listener is connected and LISTENing
        h = {"Authorization": f"Bearer {token_for(app, 'tiles_sup')}"}
        urls = {f"/tiles/grids/{z}/{x}/{y}.mvt" for z in (12, 15) for x, y in [_tile(lon, lat, z)]}
        urls |= {f"/tiles/bins/{z}/{x}/{y}.mvt" for z in (11, 16) for x, y in [_tile(lon, lat, z)]}
        urls.add("/tiles/incidents/{}/{}/{}.mvt".format(16, *_tile(lon, lat, 16)))
        before = {}
        for url in sorted(urls):
            first = client.get(url, headers=h)
            assert first.status_code == 200, first.text
            hits = maps.TILE_CACHE.hits
            assert client.get(url, headers=h).content == first.content
            assert maps.TILE_CACHE.hits == hits + 1  # the second answer came from the cache
            before[url] = first.content
        points_url = "/tiles/incidents/{}/{}/{}.mvt".format(16, *_tile(lon, lat, 16))
        assert before[points_url] == b""  # no incident yet

        for round_ in range(2):
            generation = maps.TILE_CACHE.generation
            psql(scratch, _insert(lon, lat, f"fresh-{round_}"))
            took = wait_for(lambda g=generation: maps.TILE_CACHE.generation > g, 2.0)
            assert took is not None, "the NOTIFY did not reach the app's tile cache in 2 s"
            for url in sorted(urls):
                now = client.get(url, headers=h)
                assert now.status_code == 200
                assert now.content != before[url], f"stale tile after a commit: {url}"
                before[url] = now.content
            assert before[points_url].count(b"fresh-") == 0  # ids, not tags, travel
            assert G1.encode() in before[points_url]  # the new point, with its grid
        # grids tile counts what was committed; deleting it brings the first tile back
        psql(scratch, "DELETE FROM incident WHERE external_id LIKE 'fresh-%'")
        assert wait_for(lambda: client.get(sorted(urls)[0], headers=h).content
                         != before[sorted(urls)[0]], 2.0) is not None
    with scratch.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM incident")).scalar() == 0
