"""A generated address book for a demo city, and noisy variants of it as callers type them.

Roads and house numbers are invented per community (the community names and codes are real;
no real address list is open data), each point drawn inside the community's outline with a
fixed seed, so two runs give the same book. Urban communities (社区) get streets with house
numbers, buildings (幢) and units; villages (村) get groups (组) and house numbers, as rural
addresses are written.

:func:`noisy_variants` turns book entries into what a dispatcher might type: full-width digits,
號 for 号, 幢 swapped for 座 or 栋, the province/city/district prefix left out, numbers in
Chinese numerals, 单元 left out. Each variant keeps the key of the entry it came from, so a test
or bench can say whether search found it (``bench/addresses.py``, ``tests/grids``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from sqlalchemy import Connection, text

from data.divisions import DEMO_SEED, Division

# Province and prefecture above each demo city (the book writes addresses in full).
ABOVE = {"330782": ("浙江省", "金华市"), "510131": ("四川省", "成都市")}
ROAD_SUFFIXES = ("路", "街", "大道", "巷", "东路", "西路", "南街", "北路")


@dataclass(frozen=True, slots=True)
class Entry:
    """One generated address, in parts (so noise can be applied part by part)."""

    key: str
    prefix: str  # province + prefecture + city (+ county)
    street: str
    community: str
    road: str  # a road, or a village group (3组)
    house: int
    building: int | None
    unit: int | None
    lon: float
    lat: float

    def render(self, *, prefix: bool = True, hao: str = "号", building: str = "幢",
               unit: str = "单元", numeral=str) -> str:
        out = (self.prefix if prefix else "") + self.street + self.community + self.road
        out += f"{numeral(self.house)}{hao}"
        if self.building is not None:
            out += f"{numeral(self.building)}{building}"
        if self.unit is not None:
            out += f"{numeral(self.unit)}{unit}"
        return out

    @property
    def text(self) -> str:
        return self.render()


def _stem(name: str) -> str:
    for suffix in ("社区", "村", "居委会"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def generate(conn: Connection, *, per_community: int = 48, seed: int = DEMO_SEED,
             scale: int = 1) -> list[Entry]:
    """Addresses for every community in force (``per_community`` each, times ``scale``)."""
    rng = np.random.default_rng(seed)
    city = conn.execute(text(
        "SELECT code, name FROM region_current WHERE level = 'city' ORDER BY code LIMIT 1")).one()
    province, prefecture = ABOVE.get(city.code[:6], ("", ""))
    prefix = province + prefecture + city.name
    rows = conn.execute(text(
        "SELECT c.code, c.name, s.name AS street, ST_AsBinary(c.geom) AS wkb "
        "FROM region_current c JOIN region_current s ON s.code = c.parent_code "
        "WHERE c.level = 'community' ORDER BY c.code")).all()
    out: list[Entry] = []
    n = per_community * scale
    for row in rows:
        shape = shapely.from_wkb(row.wkb)
        shapely.prepare(shape)
        lon, lat = _points_inside(shape, n, rng)
        name = Division(row.code, row.name, "").short_name  # 江滨社区居委会 → 江滨社区
        stem = _stem(name)
        village = name.endswith("村")
        roads = ([f"{g}组" for g in range(1, 9)] if village else
                 [stem + s for s in rng.choice(ROAD_SUFFIXES, size=3, replace=False)])
        seen: set[tuple[str, int, int | None, int | None]] = set()
        for i in range(n):
            road = roads[int(rng.integers(len(roads)))]
            house = int(rng.integers(1, 40 * scale + 1))
            building = unit = None
            if not village and rng.random() < 0.7:
                building = int(rng.integers(1, 13))
                unit = int(rng.integers(1, 5)) if rng.random() < 0.8 else None
            ident = (road, house, building, unit)
            if ident in seen:
                continue
            seen.add(ident)
            key = f"{row.code}-{len(seen):05d}"
            out.append(Entry(key=key, prefix=prefix, street=row.street, community=name,
                             road=road, house=house, building=building, unit=unit,
                             lon=round(float(lon[i]), 7), lat=round(float(lat[i]), 7)))
    return out


def _points_inside(shape, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = shape.bounds
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    while have < n:
        x = rng.uniform(x0, x1, 4 * n)
        y = rng.uniform(y0, y1, 4 * n)
        keep = shapely.contains_xy(shape, x, y)
        xs.append(x[keep])
        ys.append(y[keep])
        have += int(keep.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def load_demo_addresses(conn: Connection, *, per_community: int = 48) -> dict[str, int]:
    """Generate the demo book and import it through the real import path (all rows, EPSG:4490)."""
    from grids.access import Principal
    from grids.addresses import Record, import_records

    entries = generate(conn, per_community=per_community)
    records = [Record(row=i, text=e.text, x=e.lon, y=e.lat, code=e.key)
               for i, e in enumerate(entries, start=2)]
    return import_records(conn, records, principal=Principal.system("demo"), crs="EPSG:4490",
                          mode="replace", source="data.addresses (generated)")


# -- noise -----------------------------------------------------------------------------------------
_CN = "零一二三四五六七八九"
NOISES = ("fullwidth", "trad_hao", "building_word", "no_prefix", "chinese_numerals", "no_unit",
          "spaces")


def chinese_numeral(n: int) -> str:
    """12 → 十二, 105 → 一百零五, 20 → 二十, 3 → 三 (as said aloud).

    >>> [chinese_numeral(n) for n in (3, 10, 12, 20, 105, 110, 1001)]
    ['三', '十', '十二', '二十', '一百零五', '一百一十', '一零零一']
    """
    if n < 10:
        return _CN[n]
    if n < 20:
        return "十" + (_CN[n % 10] if n % 10 else "")
    if n < 100:
        return _CN[n // 10] + "十" + (_CN[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        tail = "" if rest == 0 else ("零" + _CN[rest] if rest < 10 else
                                     _CN[rest // 10] + "十" + (_CN[rest % 10] if rest % 10 else ""))
        return _CN[n // 100] + "百" + tail
    return "".join(_CN[int(d)] for d in str(n))  # door plates read digit by digit


def _fullwidth(s: str) -> str:
    return s.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})


def noisy_variants(entries: list[Entry], *, n: int, seed: int = 16) -> list[tuple[str, str, str]]:
    """``n`` queries made from random entries: ``(query, key of the entry, noises applied)``.

    Each query gets one to three noises of :data:`NOISES`.
    """
    rng = np.random.default_rng(seed)
    out = []
    for idx in rng.choice(len(entries), size=min(n, len(entries)), replace=False):
        e = entries[int(idx)]
        chosen = set(rng.choice(NOISES, size=int(rng.integers(1, 4)), replace=False).tolist())
        if "no_unit" in chosen and e.unit is None:
            chosen.discard("no_unit")
        s = e.render(prefix="no_prefix" not in chosen,
                     hao="號" if "trad_hao" in chosen else "号",
                     building=str(rng.choice(["座", "栋"])) if "building_word" in chosen else "幢",
                     unit="" if "no_unit" in chosen else "单元",
                     numeral=chinese_numeral if "chinese_numerals" in chosen else str)
        if "fullwidth" in chosen:
            s = _fullwidth(s)
        if "spaces" in chosen:
            cut = int(rng.integers(1, len(s)))
            s = s[:cut] + " " + s[cut:]
        out.append((s, e.key, "+".join(sorted(chosen)) or "none"))
    return out
