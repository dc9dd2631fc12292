"""The HAP sky grid: ProjectionCells and SkyCells (numpy + astropy only)."""
