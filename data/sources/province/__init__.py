"""The committed extract of the generated province's counties (see ../PROVENANCE.md)."""
