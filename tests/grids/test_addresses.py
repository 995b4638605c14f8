"""The standard address book: normalisation, import (bad rows, CRS, versioning), search."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, text

from data.addresses import generate, noisy_variants
from gis.address_text import normalise, parts
from gis.crs import from_lonlat
from grids import addresses
from grids.access import Principal, Scope
from grids.addresses import Record, import_file, import_records, search
from grids.errors import ImportRejected
from grids.locate import load_snapshot
from grids.upload_limits import UploadLimits, UploadTooLarge
from tests.address_book import ensure_demo_book

SYSTEM = Principal.system("test")


@pytest.mark.parametrize(("typed", "book"), [
    ("江滨路１２号３幢２单元", "江滨路12号3幢2单元"),  # full-width digits
    ("江滨路12號3幢2单元", "江滨路12号3幢2单元"),  # traditional 號
    ("江滨路12号3座2单元", "江滨路12号3幢2单元"),  # 座 for 幢
    ("江滨路12号3栋2单元", "江滨路12号3幢2单元"),  # 栋 for 幢
    ("江滨路12号3号楼2单元", "江滨路12号3幢2单元"),  # 号楼
    ("江滨路12号3幢2", "江滨路12号3幢2单元"),  # 单元 left out
    ("江滨路十二号三幢二单元", "江滨路12号3幢2单元"),  # Chinese numerals
    ("江滨路一百零五号", "江滨路105号"),
    ("江滨路 12 号 3 幢 2 单元", "江滨路12号3幢2单元"),  # spaces
    ("稠城街道江滨社区江滨路12号", "浙江省金华市某某市稠城街道江滨社区江滨路12号"),  # no prefix
    ("某某县城关镇大同村三组十五号", "城关镇大同村3组15号"),
])
def test_typed_forms_normalise_like_the_book(typed: str, book: str) -> None:
    assert normalise(typed) == normalise(book)


def test_numbers_that_differ_stay_apart() -> None:
    assert normalise("江滨路12号") != normalise("江滨路21号")
    assert normalise("江滨路十二号") != normalise("江滨路一百二十号")
    assert parts(normalise("江滨路12号3幢2单元501室")) == {
        "house": "12", "building": "3", "unit": "2", "room": "501"}


def _grid_point(conn: Connection, grid: str) -> tuple[float, float]:
    return conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE code = :g"), {"g": grid}).one()


def _grids(conn: Connection, prefix: str, n: int = 2) -> list[str]:
    return list(conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND code LIKE :p ORDER BY code "
        "LIMIT :n"), {"p": prefix + "%", "n": n}).scalars())


def _csv(rows: list[tuple[str, ...]], header: str = "code,address,lon,lat") -> bytes:
    return (header + "\n" + "\n".join(",".join(r) for r in rows) + "\n").encode()


def _current(conn: Connection, key: str):
    return conn.execute(text("SELECT * FROM address WHERE key = :k AND valid_to IS NULL"),
                        {"k": key}).first()


def test_import_places_each_address_in_its_grid_from_any_crs(conn: Connection) -> None:
    g1, g2 = _grids(conn, "330782001")
    (x1, y1), (x2, y2) = _grid_point(conn, g1), _grid_point(conn, g2)
    gx, gy = from_lonlat(x1, y1, "gcj02")
    px, py = from_lonlat(x2, y2, "EPSG:4549")
    import_file(conn, _csv([("t-1", "测试路1号", f"{float(gx):.8f}", f"{float(gy):.8f}")]), "a.csv",
                principal=SYSTEM, crs="gcj02", mode="merge")
    import_file(conn, _csv([("t-2", "测试路2号", f"{float(px):.3f}", f"{float(py):.3f}")]), "b.csv",
                principal=SYSTEM, crs="EPSG:4549", mode="merge")
    a, b = _current(conn, "t-1"), _current(conn, "t-2")
    assert (a.grid_code, b.grid_code) == (g1, g2)
    lon, lat = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM address WHERE id = :i"),
                            {"i": a.id}).one()
    assert abs(lon - x1) < 1e-6 and abs(lat - y1) < 1e-6  # stored in EPSG:4490
    assert a.norm == "测试路1号" and a.parts == {"house": "1"}


def test_xlsx_with_chinese_headers(conn: Connection) -> None:
    from openpyxl import Workbook

    (g,) = _grids(conn, "330782002", 1)
    x, y = _grid_point(conn, g)
    book = Workbook()
    sheet = book.active
    sheet.append(["地址编码", "地址", "经度", "纬度"])
    sheet.append(["t-x1", "表格路8号", x, y])
    buf = io.BytesIO()
    book.save(buf)
    summary = import_file(conn, buf.getvalue(), "book.xlsx", principal=SYSTEM, mode="merge")
    assert summary["added"] == 1 and _current(conn, "t-x1").grid_code == g


def test_every_bad_row_is_listed_and_nothing_is_written(conn: Connection) -> None:
    (g,) = _grids(conn, "330782001", 1)
    x, y = _grid_point(conn, g)
    before = conn.execute(text("SELECT count(*) FROM address")).scalar_one()
    data = _csv([
        ("t-ok", "好路1号", str(x), str(y)),
        ("t-e", "", str(x), str(y)),  # row 3: empty address
        ("t-n", "坏路2号", "east", str(y)),  # row 4: lon not a number
        ("t-o", "远路3号", "10.0", "50.0"),  # row 5: outside the city
        ("t-ok", "重路4号", str(x), str(y)),  # row 6: same code as row 2
        ("t-s", "换路5号", str(y), str(x)),  # row 7: swapped: outside
        ("t-d", "度路6号", "500", "30"),  # row 8: not degrees
    ])
    with pytest.raises(ImportRejected) as caught:
        import_file(conn, data, "bad.csv", principal=SYSTEM, mode="merge")
    errors = caught.value.detail["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (3, "address"), (4, "lon"), (5, "lon"), (6, "code"), (7, "lon"), (8, "lon")]
    assert all(e["reason"] for e in errors)
    assert conn.execute(text("SELECT count(*) FROM address")).scalar_one() == before


def test_file_level_problems(conn: Connection) -> None:
    with pytest.raises(ImportRejected) as caught:
        import_file(conn, b"name,x\n", "a.csv", principal=SYSTEM)
    assert {e["field"] for e in caught.value.detail["errors"]} == {"address", "y"}
    with pytest.raises(ImportRejected) as caught:
        import_file(conn, b"x", "a.shp", principal=SYSTEM)
    assert caught.value.code == "unsupported_format"
    with pytest.raises(ImportRejected) as caught:
        import_file(conn, _csv([("a", "b", "1", "2")]), "a.csv", principal=SYSTEM, crs="mars")
    assert caught.value.detail["errors"][0]["field"] == "crs"
    with pytest.raises(UploadTooLarge):  # grids/upload_limits.py applies
        import_file(conn, _csv([("a", "b", "1", "2")] * 5), "a.csv", principal=SYSTEM,
                    limits=UploadLimits(max_rows=3))


def test_reimport_supersedes_changed_and_ends_removed(conn: Connection) -> None:
    g1, g2 = _grids(conn, "330782001")
    (x1, y1), (x2, y2) = _grid_point(conn, g1), _grid_point(conn, g2)
    planner = Principal.make("t", "planner", Scope.of(g1, g2))  # replace ends only in its grids
    first = _csv([("t-a", "甲路1号", str(x1), str(y1)), ("t-b", "乙路2号", str(x1), str(y1)),
                  ("t-c", "丙路3号", str(x2), str(y2))])
    assert import_file(conn, first, "v1.csv", principal=planner, mode="merge")["added"] == 3
    old_a, old_b = _current(conn, "t-a"), _current(conn, "t-b")
    second = _csv([("t-a", "甲路1号", str(x1), str(y1)),  # unchanged
                   ("t-b", "乙路2号", str(x2), str(y2)),  # moved: a new version in g2
                   ("t-d", "丁路4号", str(x2), str(y2))])  # new; t-c left out: ended
    ended_outside = conn.execute(text(  # rows other tests committed may have ended already
        "SELECT count(*) FROM address WHERE valid_to IS NOT NULL AND NOT grid_code = ANY(:g)"),
        {"g": [g1, g2]}).scalar_one()
    summary = import_file(conn, second, "v2.csv", principal=planner, mode="replace")
    ended_elsewhere = summary["ended"] - 1  # demo addresses in the two grids end too
    assert {k: summary[k] for k in ("added", "changed", "unchanged")} == {
        "added": 1, "changed": 1, "unchanged": 1}
    assert ended_elsewhere >= 0
    assert _current(conn, "t-a").id == old_a.id
    new_b = _current(conn, "t-b")
    assert new_b.id != old_b.id and new_b.grid_code == g2
    ended = conn.execute(text("SELECT valid_to FROM address WHERE id = :i"),
                         {"i": old_b.id}).scalar_one()
    assert ended == new_b.valid_from  # one moment: no gap, no overlap
    assert _current(conn, "t-c") is None
    assert conn.execute(text("SELECT count(*) FROM address WHERE key = 't-c'")).scalar_one() == 1
    # outside the planner's grids nothing was ended
    assert conn.execute(text(
        "SELECT count(*) FROM address WHERE valid_to IS NOT NULL AND NOT grid_code = ANY(:g)"),
        {"g": [g1, g2]}).scalar_one() == ended_outside


def test_import_outside_the_jurisdiction_is_refused(conn: Connection) -> None:
    (inside,) = _grids(conn, "330782001", 1)
    (outside,) = _grids(conn, "330782002", 1)
    planner = Principal.make("t", "planner", Scope.of("330782001000"))
    records = [Record(row=2, text="内路1号", x=_grid_point(conn, inside)[0],
                      y=_grid_point(conn, inside)[1], code="t-in"),
               Record(row=3, text="外路1号", x=_grid_point(conn, outside)[0],
                      y=_grid_point(conn, outside)[1], code="t-out")]
    with pytest.raises(ImportRejected) as caught:
        import_records(conn, records, principal=planner, mode="merge")
    assert [(e["row"], e["field"]) for e in caught.value.detail["errors"]] == [(3, "lon")]
    assert _current(conn, "t-in") is None


@pytest.fixture(scope="module")
def book(engine: Engine) -> int:
    return ensure_demo_book(engine)


def test_noisy_queries_find_the_entry_first(book: int, conn: Connection) -> None:
    entries = generate(conn)
    assert len(entries) == book
    queries = noisy_variants(entries, n=300, seed=7)
    hits = 0
    for query, key, _ in queries:
        found = search(conn, query, principal=SYSTEM, limit=3)["candidates"]
        hits += bool(found) and found[0]["code"] == key
    assert hits / len(queries) >= 0.95


def test_search_answers_grid_point_and_confidence(book: int, conn: Connection) -> None:
    entry = generate(conn)[100]
    typed = entry.render(prefix=False, hao="號", building="座")
    answer = search(conn, typed, principal=SYSTEM, limit=5)
    top = answer["candidates"][0]
    assert top["code"] == entry.key and top["confidence"] == 1.0
    assert top["grid_code"].startswith(entry.key[:12]) and top["grid_name"]
    assert abs(top["lon"] - entry.lon) < 1e-6 and abs(top["lat"] - entry.lat) < 1e-6
    assert all(0 <= c["confidence"] <= 1 for c in answer["candidates"])
    assert [c["confidence"] for c in answer["candidates"]] == sorted(
        (c["confidence"] for c in answer["candidates"]), reverse=True)
    snap = load_snapshot(conn)
    region, _ = snap.locate_many(np.array([top["lon"]]), np.array([top["lat"]]))
    assert snap.regions[int(region[0])].code == top["grid_code"]


def test_search_is_cut_to_the_jurisdiction(book: int, conn: Connection) -> None:
    entry = next(e for e in generate(conn) if e.key.startswith("330782002"))
    street2 = Principal.make("t", "supervisor", Scope.of("330782002000"))
    street1 = Principal.make("t", "supervisor", Scope.of("330782001000"))
    found = search(conn, entry.text, principal=street2)["candidates"]
    assert found[0]["code"] == entry.key
    assert all(c["grid_code"].startswith("330782002") for c in found)
    assert all(c["grid_code"].startswith("330782001")
               for c in search(conn, entry.text, principal=street1)["candidates"])
    dispatcher = Principal.make("t", "dispatcher", Scope.of("330782000000"))
    assert search(conn, entry.text, principal=dispatcher)["candidates"][0]["code"] == entry.key


def test_empty_query_and_unknown_id(conn: Connection) -> None:
    with pytest.raises(addresses.EmptyQuery):
        search(conn, " ，。 ", principal=SYSTEM)
    with pytest.raises(addresses.AddressNotFound):
        addresses.get(conn, 2**40, principal=SYSTEM)


def test_a_slip_in_the_name_falls_to_the_fuzzy_pass(book: int, conn: Connection) -> None:
    entry = next(e for e in generate(conn) if e.unit is not None and len(e.road) >= 3)
    slipped = entry.road[0] + "某" + entry.road[2:]  # one character of the road misheard
    typed = entry.render(prefix=False).replace(entry.road, slipped)
    assert normalise(typed) not in normalise(entry.text)  # no exact match to be had
    top = search(conn, typed, principal=SYSTEM)["candidates"][0]
    assert top["code"] == entry.key and 0.5 < top["confidence"] < 1.0


def test_too_short_a_query_is_refused(conn: Connection) -> None:
    with pytest.raises(addresses.EmptyQuery) as caught:
        search(conn, "１号", principal=SYSTEM)
    assert caught.value.detail["min_length"] == 3
