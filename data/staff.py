"""A deterministic staff roster for the generated city (定人、定岗、定责).

Who is assigned where (duty in brackets):

- city: 3 command-centre duty officers (``command_duty``, head): one available, one on leave,
  one seconded, so a dispatcher always has exactly one duty officer to reach;
- street: 1 street officer (``street_officer``, head);
- community: 1 community head (``community_head``, head) and one grid chief (``grid_chief``,
  网格长) per block of up to 4 consecutive grids (sequence 001–004, 005–008, …), who is head of
  each grid in the block;
- grid: 1 full-time grid worker (``full_time``, primary) for every grid, and 1 part-time grid
  worker (``part_time``, backup) for about 88 % of grids.

Status is drawn per person: about 92 % available, 5 % on leave, 3 % seconded; then a handful of
grids (``FORCED_BOTH_UNAVAILABLE``) with a backup get both primary and backup made unavailable,
so the fallback to the grid chief and community head is always exercised.

Phone numbers are fake: ``19900`` followed by six distinct digits (11 digits in all). They were
never checked against any operator's allocation and must not be dialled or messaged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROLES = ("grid_chief", "full_time", "part_time", "community_head", "street_officer", "command_duty")
STATUSES = ("available", "seconded", "on_leave")
DUTIES = ("primary", "backup", "head")
STATUS_P = (0.92, 0.03, 0.05)
BACKUP_SHARE = 0.88
GRIDS_PER_CHIEF = 4
FORCED_BOTH_UNAVAILABLE = 8
PHONE_PREFIX = "19900"

# Common surnames, weighted roughly by frequency in Zhejiang (with local ones: 楼 傅 骆 龚 金 虞).
_SURNAMES = "王陈吴金楼朱傅张李刘黄周徐何方冯龚骆杨赵孙胡郑叶蒋毛鲍虞贾丁季应施严宗俞邵斯倪"
_SURNAME_W = np.array(
    [
        9,
        9,
        7,
        6,
        5,
        5,
        5,
        5,
        5,
        4,
        4,
        4,
        4,
        4,
        3,
        3,
        3,
        3,
        3,
        3,
        3,
        3,
        3,
        2,
        2,
        2,
        2,
        2,
        2,
        2,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
    ],
    dtype=float,
)
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红建国文辉林洁琳燕婷雪慧鹏飞浩宇晨亮志"
    "海波斌峰俊佳欣怡晓颖璐倩梅莉兰凤春荣成新忠良德永祥立民东云彬琪瑶鑫昊晶丹宁凯锋小子一金水"
)


def fake_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` plausible Chinese names: a common surname and one or two given-name characters."""
    surnames = rng.choice(len(_SURNAMES), size=n, p=_SURNAME_W / _SURNAME_W.sum())
    two = rng.random(n) < 0.7
    first = rng.integers(0, len(_GIVEN), size=n)
    second = rng.integers(0, len(_GIVEN), size=n)
    return [
        _SURNAMES[s] + _GIVEN[a] + (_GIVEN[b] if t else "")
        for s, a, b, t in zip(surnames, first, second, two, strict=True)
    ]


def fake_phones(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct fake mobile numbers ``19900dddddd``."""
    if n > 1_000_000:
        raise ValueError("at most 1,000,000 fake phone numbers")
    suffix = rng.choice(1_000_000, size=n, replace=False)
    return [f"{PHONE_PREFIX}{s:06d}" for s in suffix]


def build_roster(
    regions: pd.DataFrame, *, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Staff and assignments for ``regions`` (columns ``code``, ``level``, ``parent_code``).

    Returns ``(staff, assignments)``; see the module docstring for the rules.
    """
    roles: list[str] = []
    links: list[tuple[int, str, str]] = []  # (staff index, region code, duty)

    def hire(role: str, *places: tuple[str, str]) -> int:
        roles.append(role)
        index = len(roles) - 1
        for region, duty in places:
            links.append((index, region, duty))
        return index

    levels = regions[["code", "level", "parent_code"]]
    city = levels.loc[levels["level"] == "city", "code"].tolist()
    streets = levels.loc[levels["level"] == "street", "code"].tolist()
    communities = levels[levels["level"] == "community"]
    grids = levels[levels["level"] == "grid"].sort_values("code")
    grids_of = grids.groupby("parent_code")["code"].apply(list).to_dict()
    communities_of = communities.groupby("parent_code")["code"].apply(list).to_dict()

    duty_officers = [hire("command_duty", (c, "head")) for c in city for _ in range(3)]
    primary: dict[str, int] = {}
    backup: dict[str, int] = {}
    for street in sorted(streets):
        hire("street_officer", (street, "head"))
        for community in sorted(communities_of.get(street, [])):
            hire("community_head", (community, "head"))
            members = grids_of.get(community, [])
            for block in range(0, len(members), GRIDS_PER_CHIEF):
                hire("grid_chief", *((g, "head") for g in members[block : block + GRIDS_PER_CHIEF]))
            for grid in members:
                primary[grid] = hire("full_time", (grid, "primary"))
                if rng.random() < BACKUP_SHARE:
                    backup[grid] = hire("part_time", (grid, "backup"))

    n = len(roles)
    status = np.array(STATUSES)[rng.choice(len(STATUSES), size=n, p=STATUS_P)]
    for index, value in zip(duty_officers, ("available", "on_leave", "seconded"), strict=False):
        status[index] = value
    with_backup = sorted(backup)
    if with_backup:
        forced = rng.choice(
            len(with_backup), size=min(FORCED_BOTH_UNAVAILABLE, len(with_backup)), replace=False
        )
        for j, pick in enumerate(sorted(forced)):
            grid = with_backup[pick]
            status[primary[grid]] = "on_leave" if j % 2 == 0 else "seconded"
            status[backup[grid]] = "seconded" if j % 2 == 0 else "on_leave"

    codes = [f"S{i + 1:06d}" for i in range(n)]
    staff = pd.DataFrame(
        {
            "code": codes,
            "name": fake_names(n, rng),
            "phone": fake_phones(n, rng),
            "role": roles,
            "status": status.tolist(),
        }
    )
    assignments = pd.DataFrame(
        {
            "staff_code": [codes[i] for i, _, _ in links],
            "region_code": [r for _, r, _ in links],
            "duty": [d for _, _, d in links],
        }
    )
    return staff, assignments
