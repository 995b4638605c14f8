"""Patrols: grid workers' GPS fixes, their tracks, coverage of the grids and alerts.

- :mod:`.intake` takes batches of fixes (late, out of order, duplicated);
- :mod:`.tracks` is the filter (shifts, accuracy, speed, jitter), pure numpy/shapely;
- :mod:`.daily` a worker's day as GeoJSON; :mod:`.coverage` patrolled share per grid and region;
  :mod:`.alerts` workers outside their own grids too long.
"""
