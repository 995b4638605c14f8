"""Redraw plans: drafts, validation, impact preview, activation, history (issue 8)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
