"""The report's sections, one module each: `render(data: ReportData) -> str | None` (None: nothing to show)."""
