"""Data the portal needs beyond the other routers: outlines by zoom, live events (issue 7)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
