"""Coordinates and geometry: CRS transforms, validation, the in-memory point index.

This package imports no database and no web code.
"""
