"""Response models of the supervisor's month (``/analysis``: 研判 and 考核).

The fields the portal reads are declared and typed. These results are built from
``layers.assessment`` rows spread into dicts and differ by level and boundaries, and other work
keeps adding figures to them, so every model here keeps keys it does not declare
(``extra="allow"``) and the routes answer with ``response_model_exclude_unset`` (a declared key
a variant does not send is not added): the models document and check the shape without
dropping what a producer adds. Numbers that the crosswalk may make fractional
(``boundaries=today``) are :data:`app.schemas.Number`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import Number


class Open(BaseModel):
    """A result that keeps keys it does not declare (see the module doc)."""

    model_config = ConfigDict(extra="allow")


class Figures(Open):
    """A unit's figures for a month (``layers.assessment``; formulas in ``formulas``)."""

    code: str | None = None
    name: str | None = None
    received: Number = 0
    registered: Number = 0
    closed: Number = 0
    closed_on_time: Number = 0
    reworked: Number = 0
    due: Number = 0
    due_closed: Number = 0
    due_closed_on_time: Number = 0
    closure_rate: Number | None = None
    on_time_rate: Number | None = None
    rework_rate: Number | None = None
    mean_handling_h: Number | None = None
    p90_handling_h: Number | None = None
    grids: int | None = None
    patrolled_grids: int | None = None
    patrol_coverage: Number | None = None
    coverage_days: int | None = None


class MonthRow(Figures):
    prev: dict[str, Number | None] = {}
    last_year: dict[str, Number | None] = {}
    rank: dict[str, int | None] = {}


class Drill(Open):
    set: str
    against: str | None = None


class MonthView(Open):
    """The month's figures per unit, ranked, beside the month before and last year."""

    month: str
    level: str
    region: str | None = None
    timezone: str | None = None
    as_of: str | None = None
    rows: list[MonthRow]
    formulas: dict[str, str] = {}
    notes: list[str] = []
    coverage_days: int | None = None
    boundaries: str | None = None
    prev_month: str | None = None
    last_year_month: str | None = None
    figures: list[str] = []
    lower_is_better: list[str] = []
    ranked: dict[str, int] = {}
    total: dict[str, Figures] = {}
    drill: dict[str, Drill] = {}


class CaseRow(Open):
    id: int
    external_id: str | None = None
    category: str | None = None
    category_name: str | None = None
    state: str | None = None
    light: str | None = None
    received_at: str | None = None
    due_at: str | None = None
    closed_at: str | None = None
    closed_on_time: bool | None = None
    rework_count: int | None = None
    grid_code: str | None = None
    street_code: str | None = None
    responsible_code: str | None = None
    department: str | None = None
    card: str | None = None
    hit: bool | None = None
    handling_h: Number | None = None


class MonthCases(Open):
    """The cases behind a figure of the month."""

    month: str
    level: str
    code: str | None = None
    figure: str
    set: str | None = None
    total: int
    hits: int | None = None
    rows: list[CaseRow]
    truncated: bool
    rule: str | None = None


class OpenCase(Open):
    id: int
    external_id: str | None = None
    category_name: str | None = None
    state: str | None = None
    light: str | None = None
    received_at: str | None = None
    due_at: str | None = None
    card: str | None = None


class OpenCases(Open):
    total: int
    lights: dict[str, int]
    rows: list[OpenCase]


class Duty(Open):
    duty: str
    code: str
    name: str
    phone: str
    role: str
    status: str


class GridSummary(Open):
    """A grid's summary: open cases, the month's figures, coverage, last patrol, its people."""

    code: str
    name: str
    community: str | None = None
    street: str | None = None
    area_m2: float | None = None
    month: str
    open: OpenCases
    figures: Figures | None = None
    coverage_days: int | None = None
    patrolled_days: int | None = None
    last_patrol: str | None = None
    primary: Duty | None = None
    backup: Duty | None = None
    formulas: dict[str, str] = {}


class ScoreRule(Open):
    key: str
    measure: str
    kind: str
    points: Number
    cap: Number | None = None
    label_zh: str | None = None
    label_en: str | None = None


class UnitScore(Open):
    code: str | None = None
    name: str | None = None
    score: Number | None = None
    points: dict[str, Number] = {}
    counts: dict[str, Number | None] = {}
    due: Number | None = None
    rank: int | None = None


class Scores(Open):
    """Scores and ranks of streets and departments (rules as data)."""

    month: str
    region: str | None = None
    base: Number | None = None
    min: Number | None = None
    max: Number | None = None
    rules: list[ScoreRule] = []
    about: str | None = None
    street: list[UnitScore] = []
    department: list[UnitScore] = []


class TrendRow(Open):
    """A month of the trend: the jurisdiction's counts and rates."""

    month: str
    received: Number = 0
    registered: Number = 0
    closed: Number = 0
    closed_on_time: Number = 0
    reworked: Number = 0
    due: Number = 0
    due_closed: Number = 0
    due_closed_on_time: Number = 0
    closure_rate: Number | None = None
    on_time_rate: Number | None = None
    rework_rate: Number | None = None
    mean_handling_h: Number | None = None
    patrol_coverage: Number | None = None


class Trend(Open):
    """Twelve months of the jurisdiction's figures."""

    month: str
    region: str | None = None
    months: list[str]
    rows: list[TrendRow]
    formulas: dict[str, str] = {}
    boundaries: str | None = None


class HotGrid(Open):
    code: str
    count: int
    z: float = Field(description="Gi* z-score")
    kind: str | None = Field(description="hot, cold or null")
    confidence: int | None = Field(description="99, 95, 90 or null")
    name: str | None = Field(None, description="With geometry=true")
    geometry: dict[str, Any] | None = Field(None, description="With geometry=true: the "
                                            "outline of a hot or cold grid (GeoJSON)")


class Hotspots(Open):
    """Getis–Ord Gi* hot and cold spots of one month."""

    month: str
    category: str | None
    region: str | None = None
    n: int = Field(description="Grids in the area")
    isolates: int | None = None
    weights: str | None = None
    summary: dict[str, int] | None = None
    grids: list[HotGrid]
    note: str | None = None


class TrendGrid(Open):
    code: str
    kind: str = Field(description="new, persistent, consecutive, sporadic or diminished")
    hot_months: int
    z: list[float] = Field(description="Gi* z of each month")
    name: str | None = None
    geometry: dict[str, Any] | None = None


class HotspotTrend(Open):
    """Hot spots over ``months`` months (``months`` > 1): how each hot grid got there."""

    month: str
    months: list[str]
    category: str | None
    grids: list[TrendGrid]
    rule: str


class RecurringCase(Open):
    id: int
    external_id: str | None = None
    state: str | None = None
    address: str | None = None
    received_at: str | None = None
    lon: float | None = None
    lat: float | None = None


class Place(Open):
    rank: int
    cases: int
    ids: list[int]
    category: str | None = None
    category_name: str | None = None
    grid_code: str | None = None
    grid_name: str | None = None
    street_name: str | None = None
    lon: float | None = None
    lat: float | None = None
    first_at: str | None = None
    last_at: str | None = None
    cases_detail: list[RecurringCase] = []


class Recurring(Open):
    """Places with repeated cases (ST_ClusterDBSCAN)."""

    month: str
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    days: int
    eps_m: float
    min_cases: int
    by_category: bool
    places: list[Place]
    total: int
    rule: str | None = None


class Spike(Open):
    category: str
    category_name: str | None = None
    count: int
    baseline: Number
    ratio: Number
    p: float
    history: list[int]


class Spikes(Open):
    """Categories spiking against their own past."""

    month: str
    region: str | None = None
    spikes: list[Spike]
    params: dict[str, Number] = {}
    rule: str | None = None


class Word(Open):
    word: str
    count: int
    prev: int | None = None
    rising: bool | None = None


class StreetWords(Open):
    code: str | None = None
    name: str | None = None
    words: list[Word]


class Topics(Open):
    """Hot topics: words of the month's descriptions (jieba)."""

    month: str
    region: str | None = None
    cases: int
    cases_prev: int | None = None
    overall: list[Word]
    streets: list[StreetWords] = []
    rule: str | None = None


class PackFile(Open):
    kind: str
    url: str
    bytes: int


class Pack(Open):
    """The monthly meeting pack just built: its files (owner only) and what is in it."""

    month: str
    region: str | None = None
    area: str | None = None
    lang: str
    files: list[PackFile]
    bytes: dict[str, int] = {}
    incidents: Number | None = None
    grids: int | None = None
    heat_cells: int | None = None
    worst: int | None = None
    patrol_data: bool | None = None
    coverage_days: int | None = None
    id: str
    pruned: int | None = None
    expires_h: Number | None = None
