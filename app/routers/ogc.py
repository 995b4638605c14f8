"""OGC API - Features, read-only: the current grids for desktop GIS (issue 8)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
