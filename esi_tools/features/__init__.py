"""`esi features`: 12-lead R-peak detection, delineation, measurements, quality flags and findings."""
