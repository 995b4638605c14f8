"""Committed extract of the upstream data (see PROVENANCE.md); a package so that it installs."""
