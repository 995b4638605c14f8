"""The meeting packs on the server: kept in the configured directory, old ones removed when a
new one is built, a pack served to its builder only (issue 18)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.routers.analysis import prune_packs
from app.settings import PackSettings

MONTH = "2026-10"


@pytest.fixture
def pack_dir(api, tmp_path: Path):
    app = api[0]
    before = getattr(app.state, "pack_settings", None)
    app.state.pack_settings = PackSettings(pack_dir=str(tmp_path / "packs"), pack_max_age_h=1)
    yield tmp_path / "packs"
    app.state.pack_settings = before


def _old_pack(root: Path, name: str, age_s: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "pack.html").write_text("x", encoding="utf-8")
    t = time.time() - age_s
    os.utime(d, (t, t))
    return d


def test_prune_removes_only_old_pack_directories(tmp_path: Path) -> None:
    old = _old_pack(tmp_path, "a" * 32, 7200)
    young = _old_pack(tmp_path, "b" * 32, 60)
    other = _old_pack(tmp_path, "not-a-pack", 7200)  # something else in the directory: kept
    assert prune_packs(tmp_path, 3600) == 1
    assert not old.exists() and young.exists() and other.exists()
    assert prune_packs(tmp_path / "missing", 3600) == 0


def test_packs_live_in_the_setting_and_belong_to_their_builder(
        anonymous: TestClient, headers, pack_dir: Path) -> None:
    stale = _old_pack(pack_dir, "c" * 32, 2 * 3600)  # older than pack_max_age_h = 1
    res = anonymous.post("/analysis/pack", json={"month": MONTH, "pdf": False},
                         headers=headers("t_supervisor"))
    assert res.status_code == 200, res.text
    body = res.json()
    assert (pack_dir / body["id"] / "pack.html").is_file()
    assert (pack_dir / body["id"] / "pack.xlsx").is_file()
    assert not stale.exists() and body["pruned"] == 1
    urls = {f["kind"]: f["url"] for f in body["files"]}
    assert set(urls) == {"html", "xlsx"}
    mine = anonymous.get(urls["html"], headers=headers("t_supervisor"))
    assert mine.status_code == 200 and "<html" in mine.text
    theirs = anonymous.get(urls["html"], headers=headers("t_supervisor2"))
    assert theirs.status_code == 404 and theirs.json()["code"]
    # an assessor of the whole city is still not the builder
    assert anonymous.get(urls["xlsx"], headers=headers("t_admin")).status_code == 404
    assert anonymous.get(f"/analysis/packs/{'d' * 32}/html",
                         headers=headers("t_supervisor")).status_code == 404
