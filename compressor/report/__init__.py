"""metrics.json, report.md and the end-of-run table."""
