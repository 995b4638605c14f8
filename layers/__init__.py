"""What lies on the grids: incidents and their workflow, patrols, map aggregations, assessment."""
