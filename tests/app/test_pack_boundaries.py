"""The meeting pack honours ``boundaries`` (then/today) as /analysis/month does: from the portal's
button (POST /analysis/pack) and from ``citygrid report``, after a grid was split (issue 18)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Connection
from typer.testing import CliRunner

from app import cli as cli_mod
from app.settings import PackSettings
from tests.app.test_crosswalk_api import MONTH, activate, cases_either_side_of_a_cut
from tests.app.test_plans_api import _open


@pytest.fixture
def split_grid(anonymous: TestClient, headers, conn: Connection, api, tmp_path: Path
               ) -> Iterator[tuple[TestClient, str, str, str]]:
    """A grid with cases in November, split afterwards: (client, community, old, new code)."""
    app = api[0]
    before = getattr(app.state, "pack_settings", None)
    app.state.pack_settings = PackSettings(pack_dir=str(tmp_path / "packs"), pack_max_age_h=1,
                                           pack_max_count=10)
    client = anonymous
    client.headers.update(headers("t_planner"))
    community, code, blade, _, _ = cases_either_side_of_a_cut(client, conn, "pk")
    plan, etag = _open(client, community)
    done = client.post(f"/plans/{plan['id']}/edits", json={"op": "split", "code": code,
                                                           "line": blade},
                       headers={"If-Match": etag})
    assert done.status_code == 200, done.text
    activate(client, plan["id"], done.headers["etag"], headers("t_admin"))
    new = next(f["properties"]["code"] for f in client.get(
        f"/plans/{plan['id']}/features").json()["features"] if f["properties"]["change"] == "new")
    yield client, community, code, new
    app.state.pack_settings = before


def _pack(client: TestClient, community: str, boundaries: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"month": MONTH, "region": community, "pdf": False}
    if boundaries:
        body["boundaries"] = boundaries
    res = client.post("/analysis/pack", json=body)
    assert res.status_code == 200, res.text
    return res.json()


def _grid_incidents(book: bytes) -> dict[str, int]:
    wb = load_workbook(io.BytesIO(book))
    return {r[0]: r[3] for r in wb["网格"].iter_rows(min_row=2, values_only=True)}


def _bounds_row(book: bytes) -> Any:
    wb = load_workbook(io.BytesIO(book))
    return next(r[2] for r in wb["汇总"].iter_rows(values_only=True) if r[0] == "boundaries")


def test_the_pack_button_honours_boundaries(split_grid) -> None:
    client, community, old, new = split_grid
    then = _pack(client, community, None)
    today = _pack(client, community, "today")
    assert then["boundaries"] == "then" and today["boundaries"] == "today"
    books = {}
    for name, pack in (("then", then), ("today", today)):
        xlsx = client.get(f"/analysis/packs/{pack['id']}/xlsx")
        assert xlsx.status_code == 200
        books[name] = xlsx.content
        assert _bounds_row(xlsx.content) == name
        page = client.get(f"/analysis/packs/{pack['id']}/html").text
        note = page.split("id='boundaries-note'>", 1)[1].split("</p>", 1)[0]
        assert note.startswith("按今日边界统计" if name == "today" else "按当月边界统计"), note
    by_then, by_today = _grid_incidents(books["then"]), _grid_incidents(books["today"])
    # by the month's boundaries the five cases stay with the old grid; by today's the two in
    # the cut-off part count for the new grid, as /assessment?boundaries=today says
    assert by_then[old] == 5 and by_then[new] == 0
    assert by_today[old] == 3 and by_today[new] == 2
    api = {r["code"]: r["received"] for r in client.get("/assessment", params={
        "month": MONTH, "level": "grid", "region": community, "boundaries": "today"}
    ).json()["rows"]}
    assert {k: by_today[k] for k in (old, new)} == {old: api[old], new: api[new]}
    assert client.post("/analysis/pack", json={"month": MONTH, "boundaries": "later"}
                       ).status_code == 422


def test_citygrid_report_honours_boundaries(split_grid, conn: Connection, tmp_path: Path,
                                            monkeypatch) -> None:
    _, community, old, new = split_grid

    class Engine:  # the CLI's connection is the test's (rolled back)
        def connect(self) -> Any:
            return contextlib.nullcontext(conn)

    monkeypatch.setattr(cli_mod, "_engine", lambda: Engine())
    got = {}
    for bounds in ("then", "today"):
        res = CliRunner().invoke(cli_mod.app, [
            "report", "--month", MONTH, "--region", community, "--no-pdf",
            "--boundaries", bounds, "--out", str(tmp_path / bounds)])
        assert res.exit_code == 0, res.output
        got[bounds] = _grid_incidents((tmp_path / bounds / "pack.xlsx").read_bytes())
    assert (got["then"][new], got["today"][new]) == (0, 2)
    res = CliRunner().invoke(cli_mod.app, ["report", "--month", MONTH, "--boundaries", "x",
                                           "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
