"""Uploads are checked against their limits before and while they are parsed (413, fast).

The files are crafted here: an XLSX zip bomb (a few hundred kB that inflate to ~100 MB of XML),
a GeoPackage holding one 100,000-vertex polygon (1.7 MB; it used to kill the worker on
``POST /plans/import``), and tables over the row limit.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from openpyxl import Workbook

from grids import io as grid_io
from grids.upload_limits import (
    UploadLimits,
    UploadTooLarge,
    check_features,
    read_xlsx_rows,
)
from layers.incidents import intake


def zip_bomb(inflated_mb: int = 100) -> bytes:
    """A valid-looking XLSX whose sheet XML inflates to ``inflated_mb`` MB."""
    book = Workbook()
    book.active.append(["source", "external_id", "category"])
    plain = io.BytesIO()
    book.save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                pad = b"<!--" + b" " * (inflated_mb * 1_000_000) + b"-->"
                data = data.replace(b"<sheetData>", pad + b"<sheetData>", 1)
            dst.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return out.getvalue()


def polygon_gpkg(path: Path, vertices: int) -> Path:
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    ring = np.c_[120.05 + 0.004 * np.cos(t), 29.005 + 0.004 * np.sin(t)]
    gpd.GeoDataFrame({"code": ["330782001001901"], "name": ["大"]},
                     geometry=[shapely.Polygon(ring)], crs="EPSG:4490").to_file(
        path, layer="plan_grids", driver="GPKG", engine="pyogrio")
    return path


def test_an_xlsx_zip_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = zip_bomb()
    assert len(bomb) < 500_000
    with pytest.raises(UploadTooLarge) as caught:
        intake.read_bulk(bomb, filename="upload.xlsx")
    assert caught.value.detail["limit"] == "uncompressed_bytes"
    assert caught.value.detail["value"] > 100_000_000


def test_bulk_intake_answers_413_for_a_zip_bomb(client: TestClient) -> None:
    res = client.post("/incidents/bulk", content=zip_bomb(), headers={
        "content-type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
    assert res.status_code == 413, res.text
    assert res.json()["code"] == "upload_too_large"
    assert res.json()["detail"]["setting"] == "CITYGRID_UPLOAD_MAX_UNCOMPRESSED_BYTES"


def test_a_roster_zip_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roster.xlsx"
    path.write_bytes(zip_bomb())
    with pytest.raises(UploadTooLarge):
        grid_io.read_roster(path)


def test_rows_over_the_limit_are_refused_as_they_are_read(tmp_path: Path) -> None:
    limits = UploadLimits(max_rows=10)
    csv = "source,external_id,category\n" + "".join(
        f"hotline_12345,r{i},E0101\n" for i in range(20))
    with pytest.raises(UploadTooLarge) as caught:
        intake.read_bulk(csv.encode(), limits=limits)
    assert caught.value.code == "too_many_rows"
    book = Workbook()
    for i in range(20):
        book.active.append(["hotline_12345", f"r{i}", "E0101"])
    path = tmp_path / "rows.xlsx"
    book.save(path)
    with pytest.raises(UploadTooLarge):
        read_xlsx_rows(path, limits)
    assert len(read_xlsx_rows(path, UploadLimits(max_rows=20))) == 20


def test_feature_and_vertex_counts_are_checked_as_the_file_is_read(tmp_path: Path) -> None:
    path = polygon_gpkg(tmp_path / "big.gpkg", 100_000)
    with pytest.raises(UploadTooLarge) as caught:
        check_features(path, UploadLimits(), layer="plan_grids")
    assert caught.value.detail["limit"] == "vertices_per_feature"
    assert check_features(path, UploadLimits(max_vertices_per_feature=200_000),
                          layer="plan_grids") == {"features": 1, "vertices": 100_001}
    with pytest.raises(UploadTooLarge) as caught:
        check_features(path, UploadLimits(max_features=0, max_vertices_per_feature=200_000))
    assert caught.value.code == "too_many_features"


def test_plan_import_answers_413_for_a_100k_vertex_polygon(client: TestClient,
                                                          tmp_path: Path) -> None:
    path = polygon_gpkg(tmp_path / "big.gpkg", 100_000)
    assert path.stat().st_size > 1_000_000
    res = client.post("/plans/import", data={"region_code": "330782001001", "name": "big"},
                      files={"file": ("big.gpkg", path.read_bytes(), "application/geopackage")})
    assert res.status_code == 413, res.text
    assert res.json()["code"] == "too_many_vertices"
