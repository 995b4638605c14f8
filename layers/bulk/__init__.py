"""Bulk work over a whole city or province, in one process or on Dask distributed.

Four jobs, each the existing single-process code cut into independent partitions:

- :mod:`.relocate`: place every incident again under the boundaries in force (after a redraw or
  a code change), partitioned by month of receipt; each partition is one transaction;
- :mod:`.coverage`: recompute a year of daily patrol coverage per grid
  (:mod:`layers.patrols.grid_cover`), partitioned by day;
- :mod:`.history`: import a province's history from files (CSV or GeoParquet) through the
  intake path (:func:`layers.incidents.intake.bulk`, COPY with location), one file a partition,
  idempotent by ``(source, external_id)``;
- :mod:`.yearly`: the yearly analysis, per month and street (:func:`layers.assessment.monthly`),
  partitioned by month.

A job takes a :class:`~layers.bulk.runner.Runner`: :class:`~layers.bulk.runner.InProcess` runs the
partitions one after the other here; :class:`~layers.bulk.runner.DaskRunner` sends them to a
Dask ``distributed`` cluster (a ``LocalCluster`` on one machine, or a scheduler address). Each
partition opens its own database connection from the URL it is given, so the same function runs
in either, and both give the same answer (tests/layers/test_bulk.py holds them equal).

No ``app`` imports here: the settings and the CLI (``citygrid bulk``) live in ``app``.
"""
