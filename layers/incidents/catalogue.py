"""The category catalogue: two levels, each category with a handling department, time limits per
step and a routing rule. Seeded from the digital city-management standards (GB/T 30428, CJ/T 214)
and the city's plan; admins edit it through the API.

Routing: *location first* (先属地) sends the case to the grid where it happened; *owner first*
(先属主) is for components with an owner (street lights, manholes): the owning department handles
it, and the grid is still recorded.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.access import Permission, Principal
from grids.errors import Conflict, GridError, RegionNotFound
from layers.incidents.calendar import UNITS
from layers.incidents.workflow import DEFAULT_LIMITS_H

DEPARTMENTS = [
    ("CGJ", "综合行政执法局"), ("ZJJ", "住房和城乡建设局"), ("SWJ", "水务局"),
    ("GDJ", "供电公司"), ("JTJ", "交通运输局"), ("GAJ", "公安局"), ("SFJ", "司法局"),
    ("MZJ", "民政局"), ("YJJ", "应急管理局"), ("JD", "属地镇街"),
]

# (code, parent, name, name_en, family, department, routing, limits in hours per step)
FAST = {"register": 1, "dispatch": 1, "accept": 2, "handle": 24, "verify": 12, "close": 12}
NORMAL = {"register": 2, "dispatch": 2, "accept": 4, "handle": 72, "verify": 24, "close": 24}
SLOW = {"register": 4, "dispatch": 4, "accept": 8, "handle": 240, "verify": 48, "close": 48}
CATEGORIES: list[tuple[str, str | None, str, str, str, str, str, dict[str, int]]] = [
    ("C01", None, "公用设施", "Public facilities", "component", "ZJJ", "owner", NORMAL),
    ("C0101", "C01", "井盖破损", "Damaged manhole cover", "component", "SWJ", "owner", FAST),
    ("C0102", "C01", "路灯不亮", "Street light out", "component", "GDJ", "owner", NORMAL),
    ("C0103", "C01", "消防设施损坏", "Damaged fire equipment", "component", "YJJ", "owner", FAST),
    ("C02", None, "道路交通", "Roads and traffic", "component", "JTJ", "owner", NORMAL),
    ("C0201", "C02", "交通标志损坏", "Damaged traffic sign", "component", "JTJ", "owner", NORMAL),
    ("C0202", "C02", "道路破损", "Damaged road surface", "component", "JTJ", "owner", NORMAL),
    ("C03", None, "园林绿化", "Greenery", "component", "ZJJ", "owner", SLOW),
    ("C0301", "C03", "行道树倒伏", "Fallen street tree", "component", "ZJJ", "owner", FAST),
    ("E01", None, "市容环境", "City appearance", "event", "CGJ", "location", NORMAL),
    ("E0101", "E01", "暴露垃圾", "Exposed rubbish", "event", "CGJ", "location", FAST),
    ("E0102", "E01", "渣土车抛洒", "Spilling muck truck (渣土)", "event", "CGJ", "location", FAST),
    ("E0103", "E01", "乱堆物料", "Materials piled in public space", "event", "CGJ", "location",
     NORMAL),
    ("E02", None, "宣传广告", "Advertising", "event", "CGJ", "location", NORMAL),
    ("E0201", "E02", "违规户外广告", "Illegal outdoor advertising", "event", "CGJ", "location",
     NORMAL),
    ("E0202", "E02", "非法小广告", "Illegal flyers", "event", "CGJ", "location", FAST),
    ("E03", None, "施工管理", "Construction", "event", "ZJJ", "location", NORMAL),
    ("E0301", "E03", "违法建设（两违）", "Illegal building", "event", "ZJJ", "location", SLOW),
    ("E0302", "E03", "施工扰民", "Construction noise", "event", "ZJJ", "location", FAST),
    ("E04", None, "突发事件", "Emergencies", "event", "YJJ", "location", FAST),
    ("E0401", "E04", "路面积水", "Flooded road", "event", "SWJ", "location", FAST),
    ("E0402", "E04", "火情隐患", "Fire hazard", "event", "YJJ", "location", FAST),
    ("E05", None, "街面秩序", "Street order", "event", "CGJ", "location", NORMAL),
    ("E0501", "E05", "占道经营", "Street vending on the road", "event", "CGJ", "location", FAST),
    ("E0502", "E05", "违规停车", "Illegal parking", "event", "GAJ", "location", FAST),
    ("S01", None, "矛盾纠纷", "Disputes", "social", "SFJ", "location", NORMAL),
    ("S0101", "S01", "邻里纠纷", "Neighbour dispute", "social", "SFJ", "location", NORMAL),
    ("S0102", "S01", "劳资纠纷", "Wage dispute", "social", "SFJ", "location", NORMAL),
    ("S02", None, "治安安全隐患", "Public order and safety hazards", "social", "GAJ", "location",
     FAST),
    ("S0201", "S02", "治安隐患", "Public order hazard", "social", "GAJ", "location", FAST),
    ("S0202", "S02", "安全生产隐患", "Workplace safety hazard", "social", "YJJ", "location", FAST),
    ("S03", None, "民生服务", "Livelihood services", "social", "MZJ", "location", SLOW),
    ("S0301", "S03", "困难群众帮扶", "Help for people in hardship", "social", "MZJ", "location",
     SLOW),
    ("X01", None, "重点场景", "Priority scenes", "scene", "JD", "location", NORMAL),
    ("X0101", "X01", "群租房", "Group renting", "scene", "JD", "location", NORMAL),
    ("X0102", "X01", "电动车违规充电", "Unsafe e-bike charging", "scene", "YJJ", "location", FAST),
    ("X0103", "X01", "地下空间违规使用", "Misused underground space", "scene", "JD", "location",
     NORMAL),
]


def seed(conn: Connection) -> int:
    """Insert the seed departments and categories that are missing; edits are kept."""
    conn.execute(text("INSERT INTO department (code, name) VALUES (:c, :n) "
                      "ON CONFLICT (code) DO NOTHING"),
                 [{"c": c, "n": n} for c, n in DEPARTMENTS])
    added = 0
    for code, parent, name, name_en, family, dept, routing, limits in CATEGORIES:
        added += conn.execute(text(
            "INSERT INTO category (code, parent_id, name, name_en, family, department_id, "
            "routing, limits) SELECT :code, (SELECT id FROM category WHERE code = :parent), "
            ":name, :name_en, :family, (SELECT id FROM department WHERE code = :dept), :routing, "
            "CAST(:limits AS jsonb) ON CONFLICT (code) DO NOTHING"),
            {"code": code, "parent": parent, "name": name, "name_en": name_en, "family": family,
             "dept": dept, "routing": routing, "limits": orjson.dumps(limits).decode()}
        ).rowcount
    return added


_COLUMNS = ("c.code, p.code AS parent_code, c.name, c.name_en, c.family, d.code AS department, "
            "d.name AS department_name, c.routing, c.limits, c.limit_unit, c.active")
_FROM = ("FROM category c LEFT JOIN category p ON p.id = c.parent_id "
         "LEFT JOIN department d ON d.id = c.department_id")


def list_categories(conn: Connection, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    rows = conn.execute(text(f"SELECT {_COLUMNS} {_FROM} WHERE (:all OR c.active) "
                             "ORDER BY c.code"), {"all": include_inactive}).mappings()
    return [dict(r) for r in rows]


class CategoryNotFound(RegionNotFound):
    code = "category_not_found"


def get_category(conn: Connection, code: str) -> dict[str, Any]:
    row = conn.execute(text(f"SELECT c.id, {_COLUMNS} {_FROM} WHERE c.code = :c"),
                       {"c": code}).mappings().first()
    if row is None:
        raise CategoryNotFound(f"No category {code[:32]!r}.",
                               detail={"field": "category", "value": code[:32]})
    return dict(row)


def save_category(conn: Connection, *, code: str, parent_code: str | None, name: str,
                  name_en: str = "", family: str, department: str | None, routing: str,
                  limits: dict[str, float], active: bool = True, principal: Principal,
                  limit_unit: str = "hours") -> dict[str, Any]:
    """Create or replace a category (admins only). Only two levels: a parent has no parent.

    ``limit_unit``: the limits are calendar ``hours``, ``work_hours`` or ``work_days``
    (:mod:`layers.incidents.calendar`); a category on working days names every step's limit
    (the defaults are hours).
    """
    principal.require(Permission.CATALOGUE_WRITE)
    if limit_unit not in UNITS:
        raise GridError(f"Unknown limit unit {limit_unit[:20]!r}.",
                        detail={"field": "limit_unit", "expected": list(UNITS)},
                        code="invalid_limit_unit")
    if limit_unit == "work_days" and set(limits) != set(DEFAULT_LIMITS_H):
        raise GridError("A category on working days names the limit of every step.",
                        detail={"field": "limits", "expected": sorted(DEFAULT_LIMITS_H)},
                        code="invalid_limit_unit")
    parent_id = None
    if parent_code:
        parent = get_category(conn, parent_code)
        if parent["parent_code"]:
            raise GridError("Categories have two levels: the parent must be a top-level group.",
                            detail={"field": "parent_code", "value": parent_code},
                            code="too_deep")
        if parent_code == code:
            raise Conflict("A category cannot be its own parent.", detail={"field": "parent_code"})
        parent_id = parent["id"]
    dept_id = None
    if department:
        dept_id = conn.execute(text("SELECT id FROM department WHERE code = :c"),
                               {"c": department}).scalar()
        if dept_id is None:
            raise RegionNotFound(f"No department {department[:32]!r}.",
                                 detail={"field": "department", "value": department[:32]},
                                 code="department_not_found")
    conn.execute(text(
        "INSERT INTO category (code, parent_id, name, name_en, family, department_id, routing, "
        "limits, active, limit_unit) VALUES (:code, :parent, :name, :name_en, :family, :dept, "
        ":routing, CAST(:limits AS jsonb), :active, :unit) ON CONFLICT (code) DO UPDATE SET "
        "parent_id = EXCLUDED.parent_id, name = EXCLUDED.name, name_en = EXCLUDED.name_en, "
        "family = EXCLUDED.family, department_id = EXCLUDED.department_id, "
        "routing = EXCLUDED.routing, limits = EXCLUDED.limits, active = EXCLUDED.active, "
        "limit_unit = EXCLUDED.limit_unit"),
        {"code": code, "parent": parent_id, "name": name, "name_en": name_en, "family": family,
         "dept": dept_id, "routing": routing, "limits": orjson.dumps(limits).decode(),
         "active": active, "unit": limit_unit})
    out = get_category(conn, code)
    out.pop("id")
    return out
