"""The grid worker's phone: my grids and tasks, photos, idempotent actions and field reports,
and closure checked against evidence (photos' EXIF, the phone's position, the patrol trace)."""
