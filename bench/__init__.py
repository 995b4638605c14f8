"""Benchmarks for issue 3 (locator performance). Not part of the test suite: run ``make bench``.

Every figure is measured beside a baseline in the same run and written to
``bench/results/latest.json`` (git-ignored). See docs/benchmarks.md.
"""
