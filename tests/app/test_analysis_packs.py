"""The meeting packs on the server: kept in the configured directory, old ones removed when a
new one is built, a pack served to its builder only (issue 18)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli
from app.settings import PackSettings
from layers.report import prune_packs

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


def test_prune_keeps_at_most_the_newest(tmp_path: Path) -> None:
    packs = [_old_pack(tmp_path, c * 32, age) for c, age in (("1", 50), ("2", 40), ("3", 30),
                                                              ("4", 20))]
    assert prune_packs(tmp_path, 3600, keep=2) == 2  # none is old: the count alone
    assert [p.exists() for p in packs] == [False, False, True, True]
    assert prune_packs(tmp_path, 3600, keep=0) == 2 and not any(p.exists() for p in packs)


def test_cli_prunes_the_configured_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CITYGRID_PACK_DIR", str(tmp_path))
    monkeypatch.setenv("CITYGRID_PACK_MAX_AGE_H", "1")
    old = _old_pack(tmp_path, "e" * 32, 2 * 3600)
    young = [_old_pack(tmp_path, c * 32, age) for c, age in (("5", 300), ("6", 200),
                                                             ("7", 100))]
    other = _old_pack(tmp_path, "keep-me", 9 * 3600)
    res = CliRunner().invoke(cli, ["packs", "prune"])
    assert res.exit_code == 0, res.output
    assert "removed 1 pack(s)" in res.output and "3 kept" in res.output
    assert not old.exists() and all(p.exists() for p in young) and other.exists()
    res = CliRunner().invoke(cli, ["packs", "prune", "--keep", "1"])
    assert res.exit_code == 0 and "removed 2 pack(s)" in res.output, res.output
    assert [p.exists() for p in young] == [False, False, True]
    res = CliRunner().invoke(cli, ["packs", "prune", "--dir", str(tmp_path / "none")])
    assert res.exit_code == 0 and "removed 0 pack(s)" in res.output


def test_building_a_pack_keeps_the_count(anonymous: TestClient, headers, api,
                                          tmp_path: Path) -> None:
    app = api[0]
    before = getattr(app.state, "pack_settings", None)
    root = tmp_path / "packs"
    app.state.pack_settings = PackSettings(pack_dir=str(root), pack_max_age_h=1,
                                           pack_max_count=2)
    try:
        old = [_old_pack(root, c * 32, age) for c, age in (("8", 30), ("9", 20))]
        res = anonymous.post("/analysis/pack", json={"month": MONTH, "pdf": False},
                             headers=headers("t_supervisor"))
        assert res.status_code == 200, res.text
        assert res.json()["pruned"] == 1  # the oldest; the newest old one and the new one stay
        assert [p.exists() for p in old] == [False, True]
        assert (root / res.json()["id"]).is_dir()
    finally:
        app.state.pack_settings = before


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
