"""The portal reads its base map from the app's settings (app/settings.py), so a ``.env`` file
counts as it does for every other setting, and a bad value fails when the settings are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import PortalSettings, Settings
from map_ui import portal


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for k in ("CITYGRID_BASEMAP_URL", "CITYGRID_BASEMAP_CRS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)  # .env is read from the working directory
    return tmp_path


def test_the_base_map_comes_from_dot_env(no_env: Path) -> None:
    assert portal.portal_config().base_map is None
    (no_env / ".env").write_text("CITYGRID_BASEMAP_URL=https://tiles.example/{z}/{x}/{y}.png\n"
                                 "CITYGRID_BASEMAP_CRS=gcj-02\n", encoding="utf-8")
    got = portal.portal_config().base_map
    assert got is not None
    assert (got.url, got.crs) == ("https://tiles.example/{z}/{x}/{y}.png", "GCJ02")


def test_the_environment_wins_over_dot_env(no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_env / ".env").write_text("CITYGRID_BASEMAP_URL=https://from-file/{z}/{x}/{y}.png\n",
                                 encoding="utf-8")
    monkeypatch.setenv("CITYGRID_BASEMAP_URL", "https://from-env/{z}/{x}/{y}.png")
    got = portal.portal_config().base_map
    assert got is not None and got.url.startswith("https://from-env/") and got.crs == "WGS84"


def test_a_bad_crs_fails_when_the_settings_are_read(no_env: Path) -> None:
    (no_env / ".env").write_text("CITYGRID_BASEMAP_URL=https://t/{z}/{x}/{y}.png\n"
                                 "CITYGRID_BASEMAP_CRS=bd09\n", encoding="utf-8")
    with pytest.raises(ValueError, match="BD09"):
        PortalSettings()


def test_the_app_serves_the_base_map_of_its_settings(settings: Settings) -> None:
    conf = PortalSettings(basemap_url="https://tiles.example/{z}/{x}/{y}.png", basemap_crs="GCJ02")
    app = create_app(settings.model_copy(update={"portal": conf}))
    with TestClient(app, raise_server_exceptions=False) as client:
        body = client.get("/portal/config.json").json()
    assert body["base_map"] == {"url": "https://tiles.example/{z}/{x}/{y}.png", "crs": "GCJ02"}
    assert body["city"]["tz"]  # the city's profile, from the database


def test_no_base_map_by_default(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"portal": PortalSettings(basemap_url=None)}))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/portal/config.json").json()["base_map"] is None
