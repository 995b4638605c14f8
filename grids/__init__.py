"""Jurisdiction: the region hierarchy, boundaries and their versions, staff, topology, the locator."""
