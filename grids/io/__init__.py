"""Region files and staff rosters in and out: GeoJSON, GeoPackage, Shapefile, CSV, XLSX.

Imports are two steps, so a planner can see every problem of a file before anything is written:

1. ``read_regions`` / ``read_roster`` read a file and check everything that needs no database;
2. ``import_regions`` / ``import_roster`` check it against the registry (parents, existing codes,
   region codes) and write through :mod:`grids.store` in the caller's transaction. They never
   commit: if they raise, the caller rolls back and nothing is left behind.

Every check runs to the end and one ``ImportRejected`` lists all problems in
``detail['errors']``: ``{feature, code, field, reason}`` for region files (``feature`` is the
0-based position in the file; ``None`` for problems of the whole file) and
``{row, staff_code, field, reason}`` for rosters (``row`` as a spreadsheet shows it: the header is
row 1).

Modules: :mod:`~grids.io.regions` (reading and checking a region file),
:mod:`~grids.io.region_import` (writing regions into the registry),
:mod:`~grids.io.region_export` (the regions in force to a file), :mod:`~grids.io.roster`
(staff rosters), :mod:`~grids.io.tables` (CSV/XLSX reading and the rejection shared by all).
"""

from grids.io.region_export import EXPORT_COLUMNS, export_regions
from grids.io.region_import import CHUNK, check_sibling_overlaps, import_regions
from grids.io.regions import REGION_COLUMNS, TOLERANCE_M2, read_regions
from grids.io.roster import (
    DUTIES,
    ROLES,
    ROSTER_COLUMNS,
    STATUSES,
    import_roster,
    load_roster,
    read_roster,
)
from grids.io.tables import MAX_PROBLEMS

__all__ = [
    "CHUNK", "DUTIES", "EXPORT_COLUMNS", "MAX_PROBLEMS", "REGION_COLUMNS", "ROLES",
    "ROSTER_COLUMNS", "STATUSES", "TOLERANCE_M2", "check_sibling_overlaps", "export_regions",
    "import_regions", "import_roster", "load_roster", "read_regions", "read_roster",
]
